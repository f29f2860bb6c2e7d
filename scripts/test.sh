#!/usr/bin/env bash
# The project's test command (README): formatting, lints, a debug build, then every test of the
# workspace, the end-to-end tests against private MariaDB servers included.
#
# Works on a fresh Debian 12 machine: installs MariaDB (server + client), Java and Maven, and
# chromium (the dashboard's browser test) when missing, and fetches Apache Kafka's jars with
# Maven once (tests/kafka/fetch.sh, cached under ~/.cache/fleetsync), builds SeaweedFS's S3
# server with Go once (tests/s3/fetch.sh, same cache; Go must be there); node (>= 20.19, for
# Vite) and npm must be there, the web packages come from the npm registry (`npm ci`); the
# tests start their own MariaDB servers and Kafka brokers on free 127.0.0.1 ports in temp dirs
# and never touch a MariaDB already running on 3306.
#
# Environment:
#   RUST_TEST_THREADS          tests run at once (default 2: each e2e test runs two mariadbd and
#                              a fleetsync, which is what 2 cores carry)
#   FLEETSYNC_TEST_TIMEOUT     upper bound for `cargo test` (default 35m, a hang-guard for CI)
#   FLEETSYNC_TRINITYCORE_DIR  TrinityCore fixtures (default ../shared/fixtures/trinitycore;
#                              the tests using them say SKIPPED when absent)
#   FLEETSYNC_KAFKA_LIBS       a directory of Kafka jars to use instead of fetching them
#   FLEETSYNC_CACHE_DIR        where fetch.sh keeps the jars and weed (default ~/.cache/fleetsync)
#   FLEETSYNC_WEED_BIN         a SeaweedFS `weed` binary to use instead of building it
#   FLEETSYNC_KAFKA_JVM_OPTS   JVM options for the test brokers (default: see
#                              tests/src/kafka_setup.rs; -Xmx512m, serial GC, C1 only)
#   FLEETSYNC_TEST_KEEP_LOGS   a directory where failing Kafka tests leave their logs, a dump of
#                              the topic and the differing rows
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# mariadbd lives in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

if ! command -v mariadbd >/dev/null || ! command -v mariadb-install-db >/dev/null \
    || ! command -v mariadb >/dev/null; then
    step "installing MariaDB"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server mariadb-client
fi

# rdkafka's `ssl` feature builds librdkafka against the system OpenSSL (TLS, SASL/SCRAM to
# Kafka); the Kafka TLS tests make their certificates with the `openssl` command.
if ! pkg-config --exists openssl 2>/dev/null || ! command -v openssl >/dev/null; then
    step "installing OpenSSL headers and pkg-config"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q libssl-dev pkg-config openssl
fi

# The backup tests also load a chunk with the `zstd` command-line tool, as an operator would.
if ! command -v zstd >/dev/null; then
    step "installing zstd"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q zstd
fi

for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        step "installing the $component component"
        rustup component add "$component"
    fi
done

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# The deployment files (Helm chart, manifests, Prometheus rules and their unit tests, Grafana
# dashboard, example configs) are validated offline; check.sh installs its own tools (a venv
# from PyPI, promtool from Debian's prometheus package) when missing.
step "deploy/check.sh"
bash deploy/check.sh

# The Kafka tests run on Apache Kafka 4.4.0, started by the tests from jars that Maven fetches
# once into a cache (tests/kafka/fetch.sh; later runs reuse it, a pom change fetches again).
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    step "installing Java and Maven (for the Kafka tests' broker)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q default-jre-headless maven
fi
if [[ -z ${FLEETSYNC_KAFKA_LIBS:-} ]]; then
    step "fetching Apache Kafka's jars (Maven, cached)"
    FLEETSYNC_KAFKA_LIBS=$(tests/kafka/fetch.sh kafka)
fi
export FLEETSYNC_KAFKA_LIBS
echo "Kafka jars: $FLEETSYNC_KAFKA_LIBS"

# The S3 backup tests run against SeaweedFS's S3 gateway, built once from the Go module proxy
# into a cache (tests/s3/fetch.sh; about 5 minutes on 2 cores the first time).
if [[ -z ${FLEETSYNC_WEED_BIN:-} ]]; then
    if ! command -v go >/dev/null; then
        echo "go (1.22+) is needed to build SeaweedFS for the S3 backup tests" >&2
        exit 1
    fi
    step "building SeaweedFS's weed (Go module proxy, cached)"
    FLEETSYNC_WEED_BIN=$(tests/s3/fetch.sh)
fi
export FLEETSYNC_WEED_BIN
echo "SeaweedFS: $FLEETSYNC_WEED_BIN"

step "cargo build"
cargo build --workspace

# The web dashboard (web/, docs/dashboard.md): its typed client is generated from the OpenAPI
# document of the binary just built (a route the UI uses that changed fails `tsc` here), then
# the binary is built again to embed web/dist. The browser test drives Debian's chromium.
if ! command -v chromium >/dev/null; then
    step "installing chromium (for the dashboard's browser test)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "node (>= 20.19) and npm are needed to build the dashboard (web/)" >&2
    exit 1
fi
step "web: npm ci, npm run build, npm test (Vitest)"
(cd web && npm ci --no-audit --no-fund && FLEETSYNC_BIN="$ROOT/target/debug/fleetsync" npm run build \
    && npm test)
step "cargo build (embedding web/dist)"
cargo build -p fleetsync
export FLEETSYNC_BIN="$ROOT/target/debug/fleetsync"
# Built by the line above from tests/src/bin (cargo test builds it too): librdkafka's mock
# cluster, which only the harness self-test and tests/bench use.
export FLEETSYNC_MOCK_KAFKA_BIN="$ROOT/target/debug/fleetsync-mock-kafka"

step "starting a private MariaDB for the applier's server tests"
# coordinator/src/apply/tests*.rs run against FLEETSYNC_TEST_MARIADB_URL; without it they would
# only print SKIPPED. Own data dir and free port on 127.0.0.1; stopped on exit.
applier_db=$(mktemp -d)
applier_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mariadb-install-db --no-defaults --datadir="$applier_db/data" --user="$(id -un)" \
    --auth-root-authentication-method=normal >"$applier_db/install.log" 2>&1
mariadbd --no-defaults --user="$(id -un)" --datadir="$applier_db/data" --port="$applier_port" \
    --socket="$applier_db/mysql.sock" --bind-address=127.0.0.1 --skip-name-resolve \
    --character-set-server=utf8mb4 --innodb-buffer-pool-size=64M --tmpdir="$applier_db" \
    >"$applier_db/server.log" 2>&1 &
applier_pid=$!
disown "$applier_pid"  # stopped by the EXIT trap; no job-control notice
for _ in $(seq 1 100); do
    mariadb --no-defaults -h127.0.0.1 -P"$applier_port" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
done
mariadb --no-defaults -h127.0.0.1 -P"$applier_port" -uroot -e 'SELECT 1' >/dev/null \
    || { tail -20 "$applier_db/server.log"; exit 1; }
export FLEETSYNC_TEST_MARIADB_URL="mysql://root@127.0.0.1:$applier_port"

step "cargo test"
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
log=$(mktemp)
trap 'rm -f "$log"; kill -9 "$applier_pid" 2>/dev/null; rm -rf "$applier_db"' EXIT
timeout "${FLEETSYNC_TEST_TIMEOUT:-35m}" cargo test --workspace 2>&1 | tee "$log"

# One closing line for the whole workspace (cargo's own last line is that of an empty doc-test
# run). A test that skipped itself (fixtures absent) reports ok to cargo and prints a SKIPPED
# line: it is counted as skipped, not passed.
step "all tests passed"
awk '/^test result:/ { p += $4; f += $6 } /SKIPPED / { s++ }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p - s, f, s }' "$log"
