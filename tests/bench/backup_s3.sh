#!/usr/bin/env bash
# Backups in S3-compatible object storage (issue 17, item 6): on the same data and the same
# thread count, fleetsync backup to a local dir vs to a bucket vs mydumper to a local dir
# followed by the same upload with a standard uploader (boto3); restore from the bucket vs
# from the local dir, with myloader from the local dir as the reference.
#
# Usage:   tests/bench/backup_s3.sh         (builds fleetsync --release itself)
# Env:     BENCH_SCALE    rows multiplier (default 1.0: 9.5M rows, ~1 GB InnoDB, as backup.sh; about
#                         10 minutes on 2 idle cores)
#          BENCH_THREADS  threads for every tool (default 4): fleetsync [backup] threads,
#                         mydumper/myloader -t, the uploader's concurrent requests
#          BENCH_DIR      working directory (default: a new mktemp -d, removed on success)
#          BENCH_IDLE_WAIT  before each timed run, wait up to this many seconds for the
#                         machine to be idle (default 120; 0: don't wait)
#          BENCH_KEEP=1   keep BENCH_DIR
#          BENCH_VENV     the venv with boto3 (default target/bench/venv-s3, created once)
#          FLEETSYNC_BIN  use this fleetsync binary instead of building target/release/fleetsync
#          FLEETSYNC_WEED_BIN  SeaweedFS's weed (default: tests/s3/fetch.sh, built once, cached)
# Output:  one JSON object on stdout (also target/bench/backup-s3-<date>.json); progress and a
#          Markdown table on stderr. Exit status 1 if a run failed, a fleetsync restore differed
#          from the source or the secret key appeared in fleetsync's output.
# Method:  data, instances, timing and the restore check as backup.sh (backup_common.sh). The
#          S3 server is SeaweedFS `weed mini` (the one the e2e tests use, same flags as
#          tests/src/s3.rs) on free ports with its own data dir under BENCH_DIR, bucket `bench`,
#          one access key with a random secret per run, passed to fleetsync and boto3 as
#          AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Each run is one process measured by
#          `benchlib.py measure`: wall time, its own CPU and peak RSS (wait4's rusage), the CPU
#          of the S3 server and of both mariadbd meanwhile, and the rest of the machine's.
set -euo pipefail

BENCH_NAME=backup-s3-bench
DEFAULT_SCALE=1.0
# shellcheck source=tests/bench/backup_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/backup_common.sh"
S3TOOL="$ROOT/tests/bench/s3tool.py"
BUCKET=bench

# --- the uploader and the S3 server, before anything is started ------------------------------
[[ -x /usr/bin/time ]] || { say "installing GNU time"; apt-get install -y time >&2; }
VENV="${BENCH_VENV:-$ROOT/target/bench/venv-s3}"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import boto3" 2>/dev/null; then
    say "creating $VENV with boto3 (PyPI)"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q boto3 >&2
fi
PY="$VENV/bin/python"
WEED="${FLEETSYNC_WEED_BIN:-}"
if [[ -z "$WEED" ]]; then
    say "building or finding SeaweedFS's weed (tests/s3/fetch.sh)"
    WEED="$(bash "$ROOT/tests/s3/fetch.sh")"
fi
[[ -x "$WEED" ]] || { say "no weed binary at $WEED"; exit 1; }

bench_setup

S3DIR="$WORK/s3"
mkdir -p "$S3DIR/data"
ACCESS_KEY=fleetsync-bench
SECRET_KEY="bench-secret-$(python3 -c "import secrets;print(secrets.token_hex(12))")"
printf '{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
    "$ACCESS_KEY" "$SECRET_KEY" >"$S3DIR/s3.json"
S3P=()
for _ in $(seq 1 10); do S3P+=("$(python3 "$LIB" freeport)"); done
"$WEED" mini -dir="$S3DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="${S3P[0]}" -s3.port.grpc="${S3P[1]}" -master.port="${S3P[2]}" -master.port.grpc="${S3P[3]}" \
    -volume.port="${S3P[4]}" -volume.port.grpc="${S3P[5]}" -filer.port="${S3P[6]}" -filer.port.grpc="${S3P[7]}" \
    -admin.port="${S3P[8]}" -admin.port.grpc="${S3P[9]}" \
    -admin.ui=false -admin.port.legacy=0 -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$S3DIR/s3.json" -bucket="$BUCKET" </dev/null >"$S3DIR/weed.log" 2>&1 &
PIDS+=("$!")
PID_OF[s3]=$!
export BENCH_S3_ENDPOINT="http://127.0.0.1:${S3P[0]}" AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY"
if ! "$PY" "$S3TOOL" ready "$BUCKET" 60; then tail -n 30 "$S3DIR/weed.log" >&2; exit 1; fi
say "S3 server (weed mini, pid ${PID_OF[s3]}) serves bucket $BUCKET at $BENCH_S3_ENDPOINT"

generate_data

write_config() {  # write_config FILE DIR_LINES
    cat >"$1" <<EOF
state_dir = "$WORK/state"
[[servers]]
name = "src"
url = "mysql://root@127.0.0.1:${PORT[src]}"
[[servers]]
name = "dst"
url = "mysql://root@127.0.0.1:${PORT[dst]}"
[backup]
$2
compression = "zstd"
threads = $THREADS
chunk_rows = 100000
EOF
}
write_config "$WORK/fleetsync-local.toml" "dir = \"$WORK/out/fleetsync\""
write_config "$WORK/fleetsync-s3.toml" "dir = \"s3://$BUCKET/run1\"
s3_endpoint = \"$BENCH_S3_ENDPOINT\"
s3_region = \"us-east-1\"
s3_path_style = true"
: >"$WORK/exact.txt"
mkdir -p "$WORK/runs"

measured() {  # measured NAME CMD...: one timed run, its JSON in $WORK/runs/NAME.json
    local name=$1; shift
    python3 "$LIB" wait-idle "$IDLE_WAIT" 2>/dev/null || true
    sync
    say "$name"
    if ! python3 "$LIB" measure "$WORK/runs/$name.json" "$name" "$WORK/runs/$name.log" \
        "s3=${PID_OF[s3]},src=${PID_OF[src]},dst=${PID_OF[dst]}" -- "$@"; then
        say "$name failed; its output:"
        tail -n 20 "$WORK/runs/$name.log" "$WORK/runs/$name.log.err" >&2
        return 1
    fi
}
backup_id() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$WORK/runs/$1.log"; }
FS_CREATE=(backup create --server src --include 'bench\..*' --json)

# --- backups: same data, same threads ------------------------------------------------------------
# A failed run is reported (exit_code, "failed", exit status 1) and the runs that need its
# result are skipped; the others still run.
LOCAL_ID="" BUCKET_ID=""
measured fleetsync_backup_local "$FLEETSYNC" "${FS_CREATE[@]}" --config "$WORK/fleetsync-local.toml" &&
    LOCAL_ID="$(backup_id fleetsync_backup_local)"
measured fleetsync_backup_bucket "$FLEETSYNC" "${FS_CREATE[@]}" --config "$WORK/fleetsync-s3.toml" &&
    BUCKET_ID="$(backup_id fleetsync_backup_bucket)"
MYDUMPER_OK=0
measured mydumper_local mydumper --host 127.0.0.1 --port "${PORT[src]}" --user root -t "$THREADS" -c \
    --rows 100000 -B bench -o "$WORK/out/mydumper" && MYDUMPER_OK=1
[[ $MYDUMPER_OK == 1 ]] &&
    measured upload_mydumper "$PY" "$S3TOOL" upload "$WORK/out/mydumper" "$BUCKET" mydumper/run1 "$THREADS"

# --- restores into an empty database on dst (no binlog) ---------------------------------------------
FS_RESTORE=(backup restore --to-server dst --yes)
restore() {  # restore NAME CMD...: into an empty dst, then checked against the source
    local name=$1; shift
    reset_dst
    measured "$name" "$@" || return 0
    check_dst "$name" || true
}
[[ -n $LOCAL_ID ]] && restore fleetsync_restore_local "$FLEETSYNC" "${FS_RESTORE[@]}" --config "$WORK/fleetsync-local.toml" "$LOCAL_ID"
[[ -n $BUCKET_ID ]] && restore fleetsync_restore_bucket "$FLEETSYNC" "${FS_RESTORE[@]}" --config "$WORK/fleetsync-s3.toml" "$BUCKET_ID"
[[ $MYDUMPER_OK == 1 ]] && restore myloader_local myloader --host 127.0.0.1 --port "${PORT[dst]}" --user root -t "$THREADS" -d "$WORK/out/mydumper"

# --- sizes, the S3 server's totals, the secret ------------------------------------------------------
SECRET_SEEN=false
if grep -rqF "$SECRET_KEY" "$WORK"/runs/fleetsync_* "$WORK/state" 2>/dev/null; then
    SECRET_SEEN=true
    say "THE SECRET KEY APPEARS IN FLEETSYNC'S OUTPUT: $(grep -rlF "$SECRET_KEY" "$WORK"/runs/fleetsync_* "$WORK/state" | tr '\n' ' ')"
fi
python3 - "$WORK/meta.json" <<EOF
import json, os, subprocess, sys
sys.path.insert(0, "$ROOT/tests/bench")
import benchlib
def du(p):  # bytes in the files under p (as the bucket counts them)
    if not os.path.isdir(p):
        raise ValueError(p)
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(p) for n in names)
def usage(prefix):
    return json.loads(subprocess.run(["$PY", "$S3TOOL", "usage", "$BUCKET", prefix], capture_output=True, text=True, check=True).stdout)
def upload_line():
    try:
        return json.loads(open("$WORK/runs/upload_mydumper.log").read())["uploader"]
    except (OSError, ValueError, KeyError):
        return None
def maybe(f, *a):
    try:
        return f(*a)
    except (subprocess.CalledProcessError, ValueError, KeyError):
        return None
meta = {
    "rows": $TOTAL_ROWS, "scale": $SCALE, "threads": $THREADS, "mariadb": "$MARIADB_VERSION",
    "innodb_bytes": $DATA_BYTES, "generate_seconds": $GEN_SECONDS,
    "s3_server": "SeaweedFS weed mini ($(basename "$(dirname "$WEED")")), one process, data dir under BENCH_DIR",
    "uploader": upload_line(),
    "backup_ids": {"local": "$LOCAL_ID", "bucket": "$BUCKET_ID"},
    "stored_bytes": {
        "fleetsync_local": maybe(du, "$WORK/out/fleetsync/$LOCAL_ID") if "$LOCAL_ID" else None,
        "fleetsync_bucket": maybe(lambda: usage("run1/$BUCKET_ID")["bytes"]) if "$BUCKET_ID" else None,
        "mydumper_local": maybe(du, "$WORK/out/mydumper"),
        "mydumper_bucket": maybe(lambda: usage("mydumper/run1")["bytes"]),
    },
    "s3_server_totals": {
        "cpu_seconds": benchlib.cpu_seconds(${PID_OF[s3]}),
        "peak_rss_mib": round((benchlib.read_vm(${PID_OF[s3]}, "VmHWM") or 0) / 1024, 1),
        "data_dir_bytes": du("$S3DIR/data"),
    },
    "restore_exact": {k: v == "true" for k, v in (l.split() for l in open("$WORK/exact.txt"))},
    "secret_in_output": $([[ $SECRET_SEEN == true ]] && echo True || echo False),
    "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    "commit": "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)",
    "machine": {"cores": $(nproc), "loadavg": open("/proc/loadavg").read().split()[:3]},
}
json.dump(meta, open(sys.argv[1], "w"))
EOF
mkdir -p "$ROOT/target/bench"
OUT="$ROOT/target/bench/backup-s3-$(date +%Y%m%d-%H%M%S).json"
RUNS=()
for r in fleetsync_backup_local fleetsync_backup_bucket mydumper_local upload_mydumper \
    fleetsync_restore_local fleetsync_restore_bucket myloader_local; do
    if [[ -f "$WORK/runs/$r.json" ]]; then RUNS+=("$WORK/runs/$r.json"); else say "$r: not run"; fi
done
python3 "$LIB" backup-s3-report "$WORK/meta.json" "${RUNS[@]}" >"$OUT"
python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['table'])" "$OUT" >&2
say "written $OUT"
cat "$OUT"
python3 -c "import json,sys;sys.exit(0 if json.load(open(sys.argv[1]))['ok'] else 1)" "$OUT"
SUCCESS=1
