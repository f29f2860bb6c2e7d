#!/usr/bin/env bash
# Runs schemathesis (property-based API testing from PyPI) against a live fleetsync API: every
# operation of its OpenAPI document, with generated valid and invalid input, every check
# (no 5xx, status codes, content types and bodies as documented, invalid input rejected, ...).
#
# Usage: FLEETSYNC_TOKEN=fst_... bash tests/api/schemathesis.sh http://127.0.0.1:PORT [SYNC]
#   SYNC: an existing sync name, used for the `{name}` path parameter (default s1), so that
#   the sync routes are exercised beyond 404.
# The tool goes into a venv (FLEETSYNC_API_VENV, default /tmp/fleetsync-api-venv), created and
# filled on first use, like deploy/check.sh does. Exits with schemathesis's status.
# The e2e test `api::api_schemathesis` starts a fleetsync and runs this. `GET /api/v1/events`
# is left out: it is an endless Server-Sent Events stream (tested in api::jobs).
set -euo pipefail

BASE="${1:?usage: schemathesis.sh BASE_URL [SYNC]}"
SYNC="${2:-s1}"
: "${FLEETSYNC_TOKEN:?set FLEETSYNC_TOKEN to an owner token}"
VENV="${FLEETSYNC_API_VENV:-/tmp/fleetsync-api-venv}"
SCHEMATHESIS_VERSION="4.32.5"
EXAMPLES="${FLEETSYNC_API_FUZZ_EXAMPLES:-50}"
# A fixed seed by default, so that CI is repeatable (a finding is reproduced by the same run);
# FLEETSYNC_API_FUZZ_SEED=random explores a new one each run (printed in the summary).
SEED="${FLEETSYNC_API_FUZZ_SEED:-20261206}"

if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Path parameters `name` are the existing sync, so pause/resume/cancel/get reach their logic.
cat > "$WORK/schemathesis.toml" <<TOML
[parameters]
"path.name" = "$SYNC"

# Definitions (cli/src/api/defs.rs): a schema-valid definition can still be refused by what
# JSON Schema cannot say: an unknown server (404), a regex or cron expression that does not
# compile, a password in the URL (400), tables the patterns do not match on the servers
# (preflight, 422).
[[operations]]
include-operation-id = ["create_server", "update_server", "create_sync", "update_sync", "create_schedule", "update_schedule"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429", "5xx"]
TOML
cd "$WORK"
SEED_ARGS=()
[ "$SEED" = random ] || SEED_ARGS=(--seed "$SEED")
exec "$VENV/bin/st" --config-file "$WORK/schemathesis.toml" --no-color run "$BASE/api/v1/openapi.json" \
    "${SEED_ARGS[@]}" \
    -H "Authorization: Bearer $FLEETSYNC_TOKEN" \
    --checks all --max-examples "$EXAMPLES" \
    --exclude-operation-id events
