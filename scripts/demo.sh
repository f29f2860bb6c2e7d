#!/usr/bin/env bash
# The README's "run it" command: two private MariaDB servers (127.0.0.1:13306 source,
# 127.0.0.1:13307 target, data under $DEMO_DIR), a demo table on the source, and
# `fleetsync run` between them. A row goes into the source every 0.5 s and the target's row
# count is printed next to the source's, so you can watch rows flow. Ctrl-C stops everything.
#
# The web dashboard answers on 127.0.0.1:$API_PORT: the script prints `dashboard: URL` and
# `token: ...` (an operator token made for the demo) lines; the dashboard is built when npm is
# there (else / says how to build it).
#
# Environment: DEMO_DIR (default /tmp/fleetsync-demo; wiped at start), SRC_PORT, DST_PORT,
# API_PORT (default 18470).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/sbin:/sbin"
DEMO_DIR=${DEMO_DIR:-/tmp/fleetsync-demo}
SRC_PORT=${SRC_PORT:-13306}
DST_PORT=${DST_PORT:-13307}
API_PORT=${API_PORT:-18470}
ME=$(id -un)

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# What the demo needs from Debian's packages, installed when missing (as scripts/test.sh does):
# MariaDB server and client, and OpenSSL's headers for librdkafka's TLS/SASL build.
missing=()
for tool in mariadbd mariadb-install-db mariadb; do
    command -v "$tool" >/dev/null || missing=(mariadb-server mariadb-client)
done
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev pkg-config)
if ((${#missing[@]})); then
    echo "demo: installing ${missing[*]} (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "demo: cargo not found (install Rust with rustup)" >&2; exit 1; }

PIDS=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping"
    # Only the processes this script started, newest first.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    echo "demo: logs and data are in $DEMO_DIR"
}
trap cleanup INT TERM EXIT

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

q() { mariadb --no-defaults -h127.0.0.1 -P"$1" -uroot -N -B -e "$2"; }

# start_server NAME PORT SERVER_ID
start_server() {
    local name=$1 port=$2 id=$3 dir="$DEMO_DIR/$1"
    if port_busy "$port"; then
        echo "demo: port $port is in use; set ${name^^}_PORT to another one" >&2
        exit 1
    fi
    mkdir -p "$dir/data" "$dir/tmp"
    mariadb-install-db --no-defaults --datadir="$dir/data" --tmpdir="$dir/tmp" --user="$ME" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
        || { cat "$dir/install.log" >&2; exit 1; }
    mariadbd --no-defaults --user="$ME" --datadir="$dir/data" --tmpdir="$dir/tmp" --port="$port" \
        --socket="$dir/mysql.sock" --bind-address=127.0.0.1 --server-id="$id" \
        --gtid-domain-id="$id" --log-bin="$dir/data/binlog" --binlog-format=ROW \
        --binlog-row-image=FULL --binlog-row-metadata=FULL --log-slave-updates=ON \
        --character-set-server=utf8mb4 --skip-name-resolve --innodb-buffer-pool-size=64M \
        --log-error="$dir/error.log" &
    PIDS+=($!)
    for _ in $(seq 300); do
        q "$port" "SELECT 1" >/dev/null 2>&1 && { echo "demo: $name server up on 127.0.0.1:$port"; return; }
        sleep 0.1
    done
    echo "demo: $name server did not start; $dir/error.log:" >&2
    tail -20 "$dir/error.log" >&2
    exit 1
}

echo "demo: building fleetsync (release)"
cargo build --release --bin fleetsync
if command -v npm >/dev/null; then
    echo "demo: building the dashboard (web/: npm ci, npm run build)"
    (cd web && npm ci --no-audit --no-fund --silent \
        && FLEETSYNC_BIN="$PWD/../target/release/fleetsync" npm run build --silent >/dev/null)
    cargo build --release --bin fleetsync
else
    echo "demo: npm not found: the dashboard at / will say how to build it"
fi
if port_busy "$API_PORT"; then
    echo "demo: port $API_PORT is in use; set API_PORT to another one" >&2
    exit 1
fi

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
start_server src "$SRC_PORT" 1
start_server dst "$DST_PORT" 2

q "$SRC_PORT" "CREATE DATABASE demo;
    CREATE TABLE demo.events (id BIGINT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(100) NOT NULL,
                              created_at DATETIME(6) NOT NULL DEFAULT NOW(6));
    INSERT INTO demo.events (msg) VALUES ('hello'), ('from'), ('before the snapshot');"

CONFIG="$DEMO_DIR/fleetsync.toml"
cat >"$CONFIG" <<TOML
state_dir = "$DEMO_DIR/state"

[metrics]
listen = "127.0.0.1:0"

[[servers]]
name = "src"
url = "mysql://root@127.0.0.1:$SRC_PORT"

[[servers]]
name = "dst"
url = "mysql://root@127.0.0.1:$DST_PORT"

[[syncs]]
name = "demo"
source = "src"
targets = ["dst"]
include = ["demo\\\\..*"]

[api]
listen = "127.0.0.1:$API_PORT"
TOML
echo "demo: config $CONFIG"
TOKEN=$(target/release/fleetsync token create --config "$CONFIG" --name demo --role operator)

RUST_LOG=${RUST_LOG:-info} cargo run --release --quiet --bin fleetsync -- run --config "$CONFIG" \
    >"$DEMO_DIR/fleetsync.log" 2>&1 &
PIDS+=($!)
echo "demo: fleetsync running (log $DEMO_DIR/fleetsync.log); Ctrl-C to stop"
echo "dashboard: http://127.0.0.1:$API_PORT/"
echo "token: $TOKEN"

n=0
while true; do
    sleep 0.5
    if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then
        echo "demo: fleetsync exited; last log lines:" >&2
        tail -20 "$DEMO_DIR/fleetsync.log" >&2
        exit 1
    fi
    n=$((n + 1))
    q "$SRC_PORT" "INSERT INTO demo.events (msg) VALUES ('row $n')"
    src_rows=$(q "$SRC_PORT" "SELECT COUNT(*) FROM demo.events")
    dst_rows=$(q "$DST_PORT" "SELECT COUNT(*) FROM demo.events" 2>/dev/null || echo "-")
    printf 'source rows: %-6s target rows: %s\n' "$src_rows" "$dst_rows"
done
