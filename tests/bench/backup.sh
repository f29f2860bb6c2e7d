#!/usr/bin/env bash
# Backup/restore benchmark: fleetsync backup/restore vs mydumper/myloader vs mariadb-dump and
# the mariadb client, on one source with >= 1 GB of data (several tables, millions of rows,
# mixed types), all with the same thread count.
#
# Usage:   tests/bench/backup.sh            (builds fleetsync --release itself)
# Env:     BENCH_SCALE    rows multiplier (default 1.0: ~9.5M rows, ~1.3 GB of SQL text)
#          BENCH_THREADS  threads for every tool (default 4)
#          BENCH_DIR      working directory (default: a new mktemp -d, removed on success)
#          BENCH_IDLE_WAIT  before each timed run, wait up to this many seconds for the
#                         machine to be idle (default 120; 0: don't wait)
#          BENCH_KEEP=1   keep BENCH_DIR
#          FLEETSYNC_BIN  use this fleetsync binary instead of building target/release/fleetsync
# Output:  one JSON object on stdout (also target/bench/backup-<date>.json); progress on stderr.
# Method:  the source (binlog on, as fleetsync needs) gets the data by INSERT ... SELECT from
#          MariaDB's sequence engine. Each tool backs it up into its own directory:
#          fleetsync (zstd level 3, chunk_rows 100000), mydumper -c (gzip) --rows 100000,
#          mariadb-dump --single-transaction (plain SQL, uncompressed: its fastest form). Each
#          restore goes into the same empty target database on a second instance without a
#          binlog (so no tool pays for binlogging): fleetsync backup restore (which verifies
#          every file first), myloader, `mariadb < dump.sql`. Restores are checked by row count
#          and a CHECKSUM TABLE comparison with the source. Figures are noisy on a shared
#          machine: the "other_cpu_seconds" of each run shows CPU used by other processes.
#          Instances, data, timing and checks: backup_common.sh (shared with backup_s3.sh, the
#          object-storage variant).
set -euo pipefail

BENCH_NAME=backup-bench
DEFAULT_SCALE=1.0
# shellcheck source=tests/bench/backup_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/backup_common.sh"
bench_setup
generate_data

cat >"$WORK/fleetsync.toml" <<EOF
state_dir = "$WORK/state"
[[servers]]
name = "src"
url = "mysql://root@127.0.0.1:${PORT[src]}"
[[servers]]
name = "dst"
url = "mysql://root@127.0.0.1:${PORT[dst]}"
[backup]
dir = "$WORK/out/fleetsync"
compression = "zstd"
threads = $THREADS
chunk_rows = 100000
EOF
RESULTS="$WORK/results.txt"
EXACT="$WORK/exact.txt"
: >"$RESULTS"
: >"$EXACT"

# --- backups -------------------------------------------------------------------------------
fs_backup() { "$FLEETSYNC" backup create --config "$WORK/fleetsync.toml" --server src --include 'bench\..*' --json >"$WORK/fs-create.json"; }
timed fleetsync_backup fs_backup
FS_ID="$(python3 -c "import json;print(json.load(open('$WORK/fs-create.json'))['id'])")"
my_backup() { mydumper --host 127.0.0.1 --port "${PORT[src]}" --user root -t "$THREADS" -c --rows 100000 \
    -B bench -o "$WORK/out/mydumper" >"$WORK/mydumper.log" 2>&1; }
timed mydumper_backup my_backup
md_backup() { mariadb-dump --no-defaults -h127.0.0.1 -P"${PORT[src]}" -uroot --single-transaction \
    --databases bench >"$WORK/out/mariadb-dump.sql"; }
timed mariadb_dump_backup md_backup

# --- restores ------------------------------------------------------------------------------
reset_dst
fs_restore() { "$FLEETSYNC" backup restore --config "$WORK/fleetsync.toml" "$FS_ID" --to-server dst --yes >"$WORK/fs-restore.log"; }
timed fleetsync_restore fs_restore
check_dst fleetsync
reset_dst
my_restore() { myloader --host 127.0.0.1 --port "${PORT[dst]}" --user root -t "$THREADS" \
    -d "$WORK/out/mydumper" >"$WORK/myloader.log" 2>&1; }
timed myloader_restore my_restore
check_dst myloader
reset_dst
cli_restore() { mariadb --no-defaults -h127.0.0.1 -P"${PORT[dst]}" -uroot <"$WORK/out/mariadb-dump.sql"; }
timed mariadb_client_restore cli_restore
check_dst mariadb-client

size() { du -sb "$1" | cut -f1; }
SIZES="fleetsync=$(size "$WORK/out/fleetsync/$FS_ID") mydumper=$(size "$WORK/out/mydumper") mariadb_dump=$(size "$WORK/out/mariadb-dump.sql")"
mkdir -p "$ROOT/target/bench"
OUT="$ROOT/target/bench/backup-$(date +%Y%m%d-%H%M%S).json"
python3 - "$RESULTS" "$TOTAL_ROWS" "$THREADS" "$MARIADB_VERSION" "$DATA_BYTES" "$SIZES" "$GEN_SECONDS" "$EXACT" >"$OUT" <<'EOF'
import json, sys
res, rows, threads, version, data_bytes, sizes, gen, exact = sys.argv[1:]
rows = int(rows)
runs = {}
for line in open(res):
    name, secs, other = line.split()
    runs[name] = {"seconds": float(secs), "rows_per_s": round(rows / float(secs)), "machine_busy_cpu_seconds": float(other)}
size = {k: int(v) for k, v in (s.split("=") for s in sizes.split())}
def ratio(a, b):
    return round(runs[b]["seconds"] / runs[a]["seconds"], 2)
out = {
    "bench": "backup", "rows": rows, "threads": threads, "mariadb": version,
    "innodb_bytes": int(data_bytes), "generate_seconds": float(gen), "runs": runs,
    "stored_bytes": size,
    "restore_exact": {k: v == "true" for k, v in (l.split() for l in open(exact))},
    "ratios": {
        "backup_vs_mydumper": ratio("fleetsync_backup", "mydumper_backup"),
        "backup_vs_mariadb_dump": ratio("fleetsync_backup", "mariadb_dump_backup"),
        "restore_vs_myloader": ratio("fleetsync_restore", "myloader_restore"),
        "restore_vs_mariadb_client": ratio("fleetsync_restore", "mariadb_client_restore"),
        "size_vs_mydumper": round(size["fleetsync"] / size["mydumper"], 3),
    },
    "notes": "ratios > 1 mean fleetsync is faster (speed) or smaller (size: < 1); machine_busy_cpu_seconds counts every process on the machine during the run, ours included",
}
print(json.dumps(out, indent=2))
EOF
cat "$OUT"
SUCCESS=1
