#!/usr/bin/env python3
"""Helpers for tests/bench/catchup.sh (and lag.sh, backup.sh, backup_s3.sh) (standard library
only; talks to MariaDB through the `mariadb` command-line client).

Subcommands (all diagnostics go to stderr, results to stdout or the named file):

  freeport                          print a free TCP port on 127.0.0.1
  schema                            print the SQL creating database `bench` and its starting data
  gen ROWS SQL_OUT COUNTS_OUT       write the backlog workload (SQL) and its exact row counts (JSON)
  state-sql STATE_RS                print the CREATE statements of fleetsync's state tables,
                                    extracted from coordinator/src/apply/state.rs
  wait-native PORT FILE POS THREADS TIMEOUT OUT [CPU_PIDS]
                                    START SLAVE (already configured) on PORT, time until it has
                                    executed up to FILE:POS, write {"seconds":..} to OUT;
                                    CPU_PIDS (name=pid,...) are processes whose CPU time
                                    during the run is reported
  baseline PORT CPU_PIDS OUT        CPU, machine busy time and Handler counters before a spawn
  wait-fleetsync PORT PID START FILE POS TIMEOUT OUT [CPU_PIDS [LOG [BASELINE]]]
                                    poll fleetsync.sync_state on PORT until the applied position
                                    reaches FILE:POS; START is the epoch time fleetsync was
                                    spawned; writes {"seconds","peak_rss_kib",..} to OUT; with
                                    LOG (fleetsync's log), also saves its /metrics beside LOG
  wait-topics BOOTSTRAP TOPICS EXPECTED PROCS START TIMEOUT OUT [CPU_PIDS [GROUP]]
                                    poll a Kafka broker until TOPICS (comma-separated) hold
                                    EXPECTED messages (and GROUP has committed all of them);
                                    CPU and peak RSS of PROCS (name=pid,...) to OUT
  kafka-ready BOOTSTRAP TIMEOUT     wait until a Kafka broker answers
  wait-idle MAX_SECONDS             wait until the machine is nearly idle (at most MAX_SECONDS)
  verify PORT_A PORT_B OUT          CHECKSUM TABLE + COUNT(*) of every bench table on both sides
  lag-table-sql TABLE               print the CREATE TABLE of a lag-measurement table
  lag SRC_PORT DST_PORT TABLE RATE SECONDS TXNS_PER_S OUT [CPU_PIDS]
                                    steady-state lag: insert RATE rows/s into TABLE on the
                                    source, poll the target every 20 ms, write p50/p99/max to OUT
  lag-report OUT BUS=FILE...        merge per-bus lag results into OUT
  workloads [LIST]                  check BENCH_WORKLOADS ("all" or a comma-separated list) and
                                    print the names in the matrix's order
  schema [WORKLOADS]                (with a list) only the tables of those workloads (default mixed)
  gen ROWS SQL_OUT COUNTS_OUT [WORKLOAD]
                                    (with a workload: its backlog; default mixed)
  delete-topics BOOTSTRAP TOPICS    delete Kafka topics (comma-separated) once a run is verified
  report RUN_DIR OUT [WORKLOAD]     assemble one workload's JSON (see catchup.sh), print it as one line
  matrix OUT RESULT...              merge the workloads' results into OUT, table to stderr
  measure OUT NAME LOG CPU_PIDS -- CMD...
                                    run CMD (stdout to LOG, stderr to LOG.err); write its wall
                                    time, CPU (utime+stime) and peak RSS (from wait4), the CPU
                                    of CPU_PIDS (name=pid,...) and the rest of the machine's
                                    to OUT; exit with CMD's status
  backup-s3-report META RUN...      backup_s3.sh's JSON from its metadata and runs (stdout)
"""

import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import time

POLL = 0.05  # seconds between polls, as specified for the benchmark


def log(*a):
    print("[benchlib]", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# A persistent `mariadb` client (one process, one connection) so that polling every 50 ms
# costs a round trip, not a process start.

class Client:
    END = "__bench_end__"

    def __init__(self, port):
        self.port = port
        self.p = subprocess.Popen(
            ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{port}", "-uroot",
             "--batch", "--unbuffered", "--force"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        self._errs = []
        # stderr is drained by a thread so that an error message never blocks the client.
        import threading
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.p.stderr:
            self._errs.append(line.rstrip("\n"))

    def query(self, sql):
        """Runs one statement; returns its rows as dicts (empty list for no result set).
        Raises on an SQL error or a dead client."""
        nerr = len(self._errs)
        self.p.stdin.write(f"{sql};\nSELECT '{self.END}' AS {self.END};\n")
        self.p.stdin.flush()
        lines = []
        while True:
            line = self.p.stdout.readline()
            if line == "":
                raise RuntimeError(f"mariadb client on port {self.port} died: {self._errs[-3:]}")
            line = line.rstrip("\n")
            if line == self.END:  # header of the sentinel result
                self.p.stdout.readline()  # its value
                break
            lines.append(line)
        if len(self._errs) > nerr:
            # The error line may lag a little behind stdout; that is fine for our use (we
            # check again at the next query), but report what we have now.
            raise RuntimeError(f"SQL error on port {self.port}: {sql[:200]!r}: {self._errs[nerr:]}")
        if not lines:
            return []
        cols = lines[0].split("\t")
        return [dict(zip(cols, l.split("\t"))) for l in lines[1:]]

    def value(self, sql):
        rows = self.query(sql)
        if not rows:
            return None
        return next(iter(rows[0].values()))

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=5)
        except Exception:
            self.p.kill()


# ------------------------------------------------------------------------------------------
# A minimal Kafka protocol client (standard library only) for polling a broker cheaply every
# 50 ms over one connection: Metadata v1, ListOffsets v1, OffsetFetch v1 (versions every
# broker from 0.10 to 4.x accepts). Enough for end offsets and a consumer group's committed
# offsets; not a general client.



class KafkaWire:
    def __init__(self, bootstrap, timeout=10):
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.corr = 0

    @staticmethod
    def _str(s):
        b = s.encode()
        return struct.pack(">h", len(b)) + b

    def _call(self, api_key, version, body):
        self.corr += 1
        head = struct.pack(">hhi", api_key, version, self.corr) + self._str("fleetsync-bench")
        msg = head + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", self._read(4))[0]
        data = self._read(size)
        corr = struct.unpack(">i", data[:4])[0]
        if corr != self.corr:
            raise RuntimeError(f"kafka: correlation id {corr}, expected {self.corr}")
        return _Reader(data[4:])

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("kafka: connection closed")
            buf += chunk
        return buf

    def partitions(self, topics):
        """{topic: [partition ids]} for the topics that exist (Metadata v1)."""
        body = struct.pack(">i", len(topics)) + b"".join(self._str(t) for t in topics)
        r = self._call(3, 1, body)
        for _ in range(r.i32()):  # brokers
            r.i32(); r.s(); r.i32(); r.s()
        r.i32()  # controller
        out = {}
        for _ in range(r.i32()):
            err, name, _internal = r.i16(), r.s(), r.i8()
            parts = []
            for _ in range(r.i32()):
                r.i16(); p = r.i32(); r.i32()
                for _ in range(r.i32()): r.i32()
                for _ in range(r.i32()): r.i32()
                parts.append(p)
            if err == 0:
                out[name] = parts
        return out

    def end_offsets(self, topics):
        """{topic: sum of the partitions' end offsets} (0 for a topic that does not exist)."""
        parts = self.partitions(topics)
        res = {t: 0 for t in topics}
        if not parts:
            return res
        body = struct.pack(">ii", -1, len(parts))
        for t, ps in parts.items():
            body += self._str(t) + struct.pack(">i", len(ps))
            body += b"".join(struct.pack(">iq", p, -1) for p in ps)
        r = self._call(2, 1, body)
        for _ in range(r.i32()):
            t = r.s()
            for _ in range(r.i32()):
                r.i32(); err = r.i16(); r.i64(); off = r.i64()
                if err == 0:
                    res[t] += off
        return res

    def committed(self, group, topics):
        """{topic: sum of the group's committed offsets} (OffsetFetch v1; -1 counts as 0)."""
        parts = self.partitions(topics)
        res = {t: 0 for t in topics}
        if not parts:
            return res
        body = self._str(group) + struct.pack(">i", len(parts))
        for t, ps in parts.items():
            body += self._str(t) + struct.pack(">i", len(ps)) + b"".join(struct.pack(">i", p) for p in ps)
        r = self._call(9, 1, body)
        for _ in range(r.i32()):
            t = r.s()
            for _ in range(r.i32()):
                r.i32(); off = r.i64(); r.s(); err = r.i16()
                if err == 0 and off > 0:
                    res[t] += off
        return res

    def delete_topics(self, topics, timeout_ms=10000):
        """Deletes TOPICS (DeleteTopics v1); returns {topic: error code} (0 = deleted)."""
        body = struct.pack(">i", len(topics)) + b"".join(self._str(t) for t in topics)
        r = self._call(20, 1, body + struct.pack(">i", timeout_ms))
        r.i32()  # throttle time
        return {r.s(): r.i16() for _ in range(r.i32())}

    def close(self):
        self.sock.close()


class _Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def _take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def i8(self): return self._take(">b")
    def i16(self): return self._take(">h")
    def i32(self): return self._take(">i")
    def i64(self): return self._take(">q")

    def s(self):
        n = self.i16()
        if n < 0:
            return None
        v = self.d[self.o:self.o + n].decode()
        self.o += n
        return v


# ------------------------------------------------------------------------------------------
# Binlog coordinates

def file_num(f):
    m = re.search(r"\.(\d+)$", f)
    return int(m.group(1)) if m else -1


def reached(cur_file, cur_pos, end_file, end_pos):
    """Whether (cur_file, cur_pos) is at or past (end_file, end_pos)."""
    a, b = file_num(cur_file), file_num(end_file)
    if a != b:
        return a > b
    return int(cur_pos) >= int(end_pos)


# ------------------------------------------------------------------------------------------
# Starting data and workload

START_ACCOUNTS = 100_000
START_ORDERS = 200_000
START_EVENTS = 100_000

SCHEMA_SQL = f"""
CREATE DATABASE bench;
USE bench;
CREATE TABLE accounts (
  id BIGINT NOT NULL PRIMARY KEY,
  balance DECIMAL(12,2) NOT NULL,
  name VARCHAR(64) NOT NULL,
  updated DATETIME(6) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE orders (
  id BIGINT NOT NULL PRIMARY KEY,
  account_id BIGINT NOT NULL,
  status VARCHAR(16) NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  created DATETIME(6) NOT NULL,
  KEY idx_account (account_id),
  KEY idx_status_created (status, created)
) ENGINE=InnoDB;
CREATE TABLE events (
  id BIGINT NOT NULL PRIMARY KEY,
  kind SMALLINT NOT NULL,
  counter INT NOT NULL DEFAULT 0,
  payload VARCHAR(255) NOT NULL,
  created DATETIME(6) NOT NULL
) ENGINE=InnoDB;
INSERT INTO accounts
  SELECT seq, (seq * 37) % 100000 / 10, CONCAT('account-', seq),
         TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND
  FROM seq_1_to_{START_ACCOUNTS};
INSERT INTO orders
  SELECT seq, (seq * 7919) % {START_ACCOUNTS} + 1, ELT(seq % 3 + 1, 'new', 'paid', 'shipped'),
         (seq % 997) + 0.99, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND
  FROM seq_1_to_{START_ORDERS};
INSERT INTO events
  SELECT seq, seq % 16, 0, CONCAT('event-', seq, '-', MD5(seq), '-', SHA1(seq)),
         TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND
  FROM seq_1_to_{START_EVENTS};
"""


class Workload:
    """Generates SQL whose every statement changes an exactly known number of rows, so the
    number of row events in the binlog is known without decoding it.

    * accounts are only inserted at the end of the id range, never deleted: ids 1..n;
    * events form the contiguous id range lo..hi (bulk deletes from the low end);
    * order ids are tracked in a list (random deletes).
    Every UPDATE changes at least one column of every row it matches (no no-op updates,
    which would not be logged)."""

    def __init__(self, seed=42):
        self.r = random.Random(seed)
        self.n_accounts = START_ACCOUNTS
        self.orders = list(range(1, START_ORDERS + 1))
        self.order_pos = {o: i for i, o in enumerate(self.orders)}
        self.next_order = START_ORDERS + 1
        self.ev_lo, self.ev_hi = 1, START_EVENTS
        self.c = dict(inserts=0, updates=0, deletes=0, oltp_txns=0, oltp_rows=0,
                      bulk_txns=0, bulk_rows=0, statements=0)

    def _acct(self):
        return self.r.randint(1, self.n_accounts)

    def _rand_order(self):
        return self.orders[self.r.randrange(len(self.orders))]

    def _del_order(self, o):
        i = self.order_pos.pop(o)
        last = self.orders.pop()
        if last != o:
            self.orders[i] = last
            self.order_pos[last] = i

    def _payload(self, i):
        return f"ev-{i}-" + "%032x" % self.r.getrandbits(128)

    def oltp(self):
        r = self.r
        stmts, rows = [], 0
        for _ in range(r.randint(1, 5)):
            k = r.random()
            if k < 0.35:
                d = r.randint(1, 5000) / 100 * r.choice((-1, 1))
                stmts.append(f"UPDATE accounts SET balance=balance+{d:.2f}, updated=NOW(6) WHERE id={self._acct()}")
                self.c["updates"] += 1
            elif k < 0.60:
                o = self.next_order
                self.next_order += 1
                self.orders.append(o)
                self.order_pos[o] = len(self.orders) - 1
                stmts.append(f"INSERT INTO orders VALUES ({o},{self._acct()},'new',{r.randint(100, 99999) / 100:.2f},NOW(6))")
                self.c["inserts"] += 1
            elif k < 0.80:
                st = r.choice(("paid", "shipped", "returned"))
                stmts.append(f"UPDATE orders SET status='{st}', amount=amount+0.01 WHERE id={self._rand_order()}")
                self.c["updates"] += 1
            elif k < 0.90:
                o = self._rand_order()
                self._del_order(o)
                stmts.append(f"DELETE FROM orders WHERE id={o}")
                self.c["deletes"] += 1
            elif k < 0.95:
                self.n_accounts += 1
                a = self.n_accounts
                stmts.append(f"INSERT INTO accounts VALUES ({a},0.00,'account-{a}',NOW(6))")
                self.c["inserts"] += 1
            else:
                self.ev_hi += 1
                stmts.append(f"INSERT INTO events VALUES ({self.ev_hi},{r.randint(0, 15)},0,'{self._payload(self.ev_hi)}',NOW(6))")
                self.c["inserts"] += 1
            rows += 1
        self.c["oltp_txns"] += 1
        self.c["oltp_rows"] += rows
        self.c["statements"] += len(stmts)
        return "BEGIN;\n" + ";\n".join(stmts) + ";\nCOMMIT;\n", rows

    def bulk(self):
        r = self.r
        k = r.random()
        stmts, rows = [], 0
        if k < 0.40 or self.ev_hi - self.ev_lo < 5000:
            for _ in range(r.randint(1, 2)):
                vals = []
                for _ in range(1000):
                    self.ev_hi += 1
                    vals.append(f"({self.ev_hi},{r.randint(0, 15)},0,'{self._payload(self.ev_hi)}',NOW(6))")
                stmts.append("INSERT INTO events VALUES " + ",".join(vals))
                self.c["inserts"] += 1000
                rows += 1000
        elif k < 0.65:
            a = r.randint(1, self.n_accounts - 999)
            stmts.append(f"UPDATE accounts SET balance=balance+1, updated=NOW(6) WHERE id BETWEEN {a} AND {a + 999}")
            self.c["updates"] += 1000
            rows += 1000
        elif k < 0.80:
            e = r.randint(self.ev_lo, self.ev_hi - 999)
            stmts.append(f"UPDATE events SET counter=counter+1 WHERE id BETWEEN {e} AND {e + 999}")
            self.c["updates"] += 1000
            rows += 1000
        else:
            stmts.append(f"DELETE FROM events WHERE id BETWEEN {self.ev_lo} AND {self.ev_lo + 999}")
            self.ev_lo += 1000
            self.c["deletes"] += 1000
            rows += 1000
        self.c["bulk_txns"] += 1
        self.c["bulk_rows"] += rows
        self.c["statements"] += len(stmts)
        return "BEGIN;\n" + ";\n".join(stmts) + ";\nCOMMIT;\n", rows

    def generate(self, target_rows, out, oltp_only=False):
        total = 0
        out.write("USE bench;\n")
        while total < target_rows:
            # Interleave so that about half of the row events come from bulk transactions
            # (workload `mixed`); workload `oltp` has the small transactions only.
            if not oltp_only and self.c["bulk_rows"] + 1000 <= self.c["oltp_rows"]:
                sql, n = self.bulk()
            else:
                sql, n = self.oltp()
            out.write(sql)
            total += n
        self.c["row_events"] = total
        self.c["transactions"] = self.c["oltp_txns"] + self.c["bulk_txns"]
        assert total == self.c["inserts"] + self.c["updates"] + self.c["deletes"]
        return self.c

# ------------------------------------------------------------------------------------------
# The benchmark matrix (issue 13): one backlog per workload, each on tables of its own. Every
# workload starts from the same starting data (all the selected workloads' tables, created by
# `schema`), so one source data-dir copy serves them all.

SBTEST_ROWS = 100_000   # sysbench-like table: bulk inserts append to it, large UPDATEs hit it
FK_PARENTS = 10_000
FK_CHILDREN = 100_000
WIDE_ROWS = 20_000
BULK_ROWS_PER_TXN = 10_000    # issue 13 (b): bulk multi-row inserts of 10k rows
UPDATE_ROWS_PER_TXN = 50_000  # issue 13 (c): large UPDATEs touching 50k rows each
# Wide rows are ~1.5 KB (TEXT/BLOB/JSON; the binlog holds before and after images of
# updates): a fifth of BENCH_ROWS keeps the binlog, run time and disk use in line with the
# other workloads.
WIDE_ROWS_SHARE = 0.2

SBTEST_SQL = f"""
CREATE TABLE sbtest (
  id BIGINT NOT NULL PRIMARY KEY,
  k INT NOT NULL DEFAULT 0,
  c CHAR(120) NOT NULL DEFAULT '',
  pad CHAR(60) NOT NULL DEFAULT '',
  KEY k_1 (k)
) ENGINE=InnoDB;
INSERT INTO sbtest
  SELECT seq, (seq * 7919) % 100000, CONCAT(MD5(seq), MD5(seq + 1), MD5(seq + 2), LEFT(MD5(seq + 3), 24)),
         CONCAT(MD5(seq + 4), LEFT(MD5(seq + 5), 28))
  FROM seq_1_to_{SBTEST_ROWS};
"""

FK_SQL = f"""
CREATE TABLE parent (
  id BIGINT NOT NULL PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  region SMALLINT NOT NULL,
  created DATETIME(6) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE child (
  id BIGINT NOT NULL PRIMARY KEY,
  parent_id BIGINT NOT NULL,
  sku VARCHAR(32) NOT NULL,
  qty INT NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  created DATETIME(6) NOT NULL,
  KEY idx_parent (parent_id),
  KEY idx_sku (sku),
  KEY idx_created_qty (created, qty),
  CONSTRAINT fk_child_parent FOREIGN KEY (parent_id) REFERENCES parent (id)
) ENGINE=InnoDB;
INSERT INTO parent
  SELECT seq, CONCAT('parent-', seq), seq % 50, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND
  FROM seq_1_to_{FK_PARENTS};
INSERT INTO child
  SELECT seq, (seq * 7919) % {FK_PARENTS} + 1, CONCAT('sku-', seq % 5000), seq % 100, (seq % 997) + 0.99,
         TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND
  FROM seq_1_to_{FK_CHILDREN};
"""

# 30 columns: id + 8 INT + 2 BIGINT + 3 DECIMAL + 2 DOUBLE + 5 VARCHAR + 2 DATETIME(6) + DATE
# + 2 TEXT + 2 BLOB + 2 JSON.
WIDE_SQL = f"""
CREATE TABLE wide (
  id BIGINT NOT NULL PRIMARY KEY,
  {", ".join(f"i{n} INT NOT NULL" for n in range(1, 9))},
  b1 BIGINT NOT NULL, b2 BIGINT NOT NULL,
  d1 DECIMAL(12,2) NOT NULL, d2 DECIMAL(12,2) NOT NULL, d3 DECIMAL(12,2) NOT NULL,
  f1 DOUBLE NOT NULL, f2 DOUBLE NOT NULL,
  {", ".join(f"v{n} VARCHAR(64) NOT NULL" for n in range(1, 6))},
  t1 DATETIME(6) NOT NULL, t2 DATETIME(6) NOT NULL, dt DATE NOT NULL,
  tx1 TEXT NOT NULL, tx2 TEXT NOT NULL,
  bl1 BLOB NOT NULL, bl2 BLOB NOT NULL,
  j1 JSON NOT NULL, j2 JSON NOT NULL
) ENGINE=InnoDB;
INSERT INTO wide
  SELECT seq, {", ".join(f"seq % {97 + n}" for n in range(1, 9))},
         seq * 1000003, -seq, seq / 7, seq % 1000 + 0.5, -seq / 3, seq / 13, seq * 1.5,
         {", ".join(f"CONCAT('v{n}-', MD5(seq + {n}))" for n in range(1, 6))},
         TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND, NOW(6), DATE'2024-01-01' + INTERVAL seq % 3000 DAY,
         REPEAT(MD5(seq), 16), REPEAT(SHA1(seq), 4), UNHEX(REPEAT(MD5(seq), 8)), UNHEX(SHA1(seq)),
         JSON_OBJECT('id', seq, 'tags', JSON_ARRAY('a', 'b', seq % 7), 'note', MD5(seq)),
         JSON_OBJECT('n', seq)
  FROM seq_1_to_{WIDE_ROWS};
"""


class _Gen:
    """Base of the matrix generators: same counters as Workload, every statement changes an
    exactly known number of rows (ids tracked, every UPDATE changes every row it matches)."""

    def __init__(self, seed=42):
        self.r = random.Random(seed)
        self.c = dict(inserts=0, updates=0, deletes=0, statements=0, oltp_txns=0, oltp_rows=0,
                      bulk_txns=0, bulk_rows=0, transactions=0)

    def txn(self):
        """One transaction: (SQL text, row events)."""
        raise NotImplementedError

    def generate(self, target_rows, out):
        total = 0
        out.write("USE bench;\n")
        while total < target_rows:
            stmts, n = self.txn()
            out.write("BEGIN;\n" + ";\n".join(stmts) + ";\nCOMMIT;\n")
            self.c["transactions"] += 1
            self.c["statements"] += len(stmts)
            total += n
        self.c["row_events"] = total
        assert total == self.c["inserts"] + self.c["updates"] + self.c["deletes"]
        return self.c


class SbtestGen(_Gen):
    """(b) `bulk`: each transaction one INSERT of 10,000 rows appended to sbtest;
    (c) `update`: each transaction one `UPDATE sbtest SET k=k+1` over 50,000 consecutive ids."""

    def __init__(self, update, seed=42):
        super().__init__(seed)
        self.update, self.hi = update, SBTEST_ROWS

    def txn(self):
        r = self.r
        if self.update:
            a = r.randint(1, self.hi - UPDATE_ROWS_PER_TXN + 1)
            self.c["updates"] += UPDATE_ROWS_PER_TXN
            return [f"UPDATE sbtest SET k=k+1 WHERE id BETWEEN {a} AND {a + UPDATE_ROWS_PER_TXN - 1}"], UPDATE_ROWS_PER_TXN
        vals = []
        for _ in range(BULK_ROWS_PER_TXN):
            self.hi += 1
            h = r.randbytes(90).hex()
            vals.append(f"({self.hi},{r.randint(0, 99999)},'{h[:120]}','{h[120:]}')")
        self.c["inserts"] += BULK_ROWS_PER_TXN
        return ["INSERT INTO sbtest VALUES " + ",".join(vals)], BULK_ROWS_PER_TXN


class FkGen(_Gen):
    """(d) `fk`: child has a foreign key to parent and three secondary indexes. Transactions of
    1-3 statements of 10-100 rows: inserts of children (60 %, a tenth of them after a new
    parent in the same transaction), updates of an indexed column over an id range (25 %),
    deletes from the low end of the id range (15 %). Child ids are the range lo..hi."""

    def __init__(self, seed=42):
        super().__init__(seed)
        self.parents, self.lo, self.hi = FK_PARENTS, 1, FK_CHILDREN

    def _children(self, n, parent=None):
        r, vals = self.r, []
        for _ in range(n):
            self.hi += 1
            p = parent or r.randint(1, self.parents)
            vals.append(f"({self.hi},{p},'sku-{r.randint(0, 4999)}',{r.randint(1, 99)},{r.randint(100, 99999) / 100:.2f},NOW(6))")
        self.c["inserts"] += n
        return "INSERT INTO child VALUES " + ",".join(vals)

    def txn(self):
        r = self.r
        stmts, rows = [], 0
        for _ in range(r.randint(1, 3)):
            n, k = r.randint(10, 100), r.random()
            if k < 0.06:
                self.parents += 1
                stmts.append(f"INSERT INTO parent VALUES ({self.parents},'parent-{self.parents}',{r.randint(0, 49)},NOW(6))")
                self.c["inserts"] += 1
                stmts.append(self._children(n, self.parents))
                rows += n + 1
            elif k < 0.60 or self.hi - self.lo < 1000:
                stmts.append(self._children(n))
                rows += n
            elif k < 0.85:
                a = r.randint(self.lo, self.hi - n + 1)
                stmts.append(f"UPDATE child SET qty=qty+1 WHERE id BETWEEN {a} AND {a + n - 1}")
                self.c["updates"] += n
                rows += n
            else:
                stmts.append(f"DELETE FROM child WHERE id BETWEEN {self.lo} AND {self.lo + n - 1}")
                self.lo += n
                self.c["deletes"] += n
                rows += n
        return stmts, rows


class WideGen(_Gen):
    """(e) `wide`: 30 columns with TEXT, BLOB and JSON (~1.5 KB a row). Transactions of 1-3
    statements of 5-40 rows: inserts (55 %), updates over an id range (35 %; the binlog's
    full row image carries every column twice), deletes from the low end (10 %)."""

    def __init__(self, seed=42):
        super().__init__(seed)
        self.lo, self.hi = 1, WIDE_ROWS

    def _row(self, i):
        r = self.r
        ints = ",".join(str(r.randint(-2**31, 2**31 - 1)) for _ in range(8))
        vs = ",".join(f"'{r.randbytes(r.randint(4, 30)).hex()}'" for _ in range(5))
        j1 = json.dumps({"id": i, "tags": [r.randbytes(3).hex() for _ in range(r.randint(1, 6))],
                         "score": r.randint(0, 10**6) / 100, "note": r.randbytes(r.randint(20, 80)).hex()})
        j2 = json.dumps({"n": i, "ok": r.random() < 0.5})
        return (f"({i},{ints},{r.randint(-2**62, 2**62)},{r.randint(0, 2**40)},"
                f"{r.randint(-10**9, 10**9) / 100:.2f},{r.randint(0, 10**7) / 100:.2f},{r.randint(-999, 999)}.50,"
                f"{r.random() * 1e6!r},{r.random()!r},{vs},NOW(6),'2025-0{r.randint(1, 9)}-1{r.randint(0, 9)} 12:34:56.{r.randint(0, 999999):06d}',"
                f"'20{r.randint(10, 39)}-0{r.randint(1, 9)}-2{r.randint(0, 8)}',"
                f"'{r.randbytes(r.randint(150, 450)).hex()}','{r.randbytes(r.randint(50, 150)).hex()}',"
                f"X'{r.randbytes(r.randint(100, 400)).hex()}',X'{r.randbytes(r.randint(20, 100)).hex()}',"
                f"'{j1}','{j2}')")

    def txn(self):
        r = self.r
        stmts, rows = [], 0
        for _ in range(r.randint(1, 3)):
            n, k = r.randint(5, 40), r.random()
            if k < 0.55 or self.hi - self.lo < 500:
                vals = []
                for _ in range(n):
                    self.hi += 1
                    vals.append(self._row(self.hi))
                stmts.append("INSERT INTO wide VALUES " + ",".join(vals))
                self.c["inserts"] += n
            elif k < 0.90:
                a = r.randint(self.lo, self.hi - n + 1)
                stmts.append(f"UPDATE wide SET i1=i1+1, f2=f2+1, tx2=CONCAT(LEFT(tx2, 60), '{r.randbytes(40).hex()}'), "
                             f"j2=JSON_SET(j2, '$.u', {r.randint(0, 10**6)}) WHERE id BETWEEN {a} AND {a + n - 1}")
                self.c["updates"] += n
            else:
                stmts.append(f"DELETE FROM wide WHERE id BETWEEN {self.lo} AND {self.lo + n - 1}")
                self.lo += n
                self.c["deletes"] += n
            rows += n
        return stmts, rows


# name -> (what it is, the SQL creating its starting data, generator factory, share of
# BENCH_ROWS), in the order they run.
WORKLOADS = {
    "oltp": ("small OLTP transactions of 1-5 statements (accounts, orders, events)",
             SCHEMA_SQL, lambda: Workload(), 1.0),
    "bulk": (f"bulk multi-row INSERTs of {BULK_ROWS_PER_TXN:,} rows per transaction (sbtest)",
             SBTEST_SQL, lambda: SbtestGen(update=False), 1.0),
    "update": (f"large UPDATEs touching {UPDATE_ROWS_PER_TXN:,} rows each (sbtest, k=k+1)",
               SBTEST_SQL, lambda: SbtestGen(update=True), 1.0),
    "fk": ("child table with three secondary indexes and a foreign key to parent; "
           "transactions of 1-3 statements of 10-100 rows", FK_SQL, lambda: FkGen(), 1.0),
    "wide": ("wide rows: 30 columns with TEXT, BLOB and JSON (~1.5 KB), transactions of 1-3 "
             "statements of 5-40 rows", WIDE_SQL, lambda: WideGen(), WIDE_ROWS_SHARE),
    "mixed": ("the original mix: half the rows in small OLTP transactions, half in bulk "
              "transactions of 1,000-2,000 rows (accounts, orders, events)",
              SCHEMA_SQL, lambda: Workload(), 1.0),
}


# Starting rows of each workload's tables (by its schema), for the report.
STARTING_ROWS = {
    SCHEMA_SQL: {"accounts": START_ACCOUNTS, "orders": START_ORDERS, "events": START_EVENTS},
    SBTEST_SQL: {"sbtest": SBTEST_ROWS},
    FK_SQL: {"parent": FK_PARENTS, "child": FK_CHILDREN},
    WIDE_SQL: {"wide": WIDE_ROWS},
}


def parse_workloads(spec):
    """'all' or 'a,b,...' -> the names, in the matrix's order; exits with a one-line error
    naming an unknown one."""
    names = [w.strip() for w in (spec or "all").split(",") if w.strip()]
    if names == ["all"]:
        return list(WORKLOADS)
    bad = [w for w in names if w not in WORKLOADS]
    if bad or not names:
        sys.exit(f"BENCH_WORKLOADS: unknown workload {', '.join(bad) or '(empty)'}; "
                 f"known: all or a comma-separated list of {', '.join(WORKLOADS)}")
    return [w for w in WORKLOADS if w in names]


def schema_sql(names):
    """CREATE DATABASE bench and the starting data of the given workloads (each table once)."""
    parts, seen = ["CREATE DATABASE bench;\nUSE bench;"], set()
    for w in names:
        sql = WORKLOADS[w][1]
        if sql not in seen:
            seen.add(sql)
            parts.append(sql.replace("CREATE DATABASE bench;\nUSE bench;", "", 1))
    return "\n".join(parts)


def generate(name, bench_rows, out):
    """Writes workload NAME's backlog (its share of BENCH_ROWS row events) to OUT; returns the
    counts."""
    _, _, factory, share = WORKLOADS[name]
    target = max(1, int(bench_rows * share))
    gen = factory()
    c = gen.generate(target, out, oltp_only=True) if name == "oltp" else gen.generate(target, out)
    c["workload"] = name
    return c


# ------------------------------------------------------------------------------------------

def read_vm(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
    except OSError:
        return None
    return None


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def cpu_seconds(pid):
    """utime + stime of a process so far, in seconds (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_seconds():
    """CPU seconds spent busy by the whole machine since boot (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    steal_guest = sum(v[7:]) if len(v) > 7 else 0  # steal, guest, guest_nice
    return (sum(v) - idle - steal_guest) / os.sysconf("SC_CLK_TCK")


def other_cpu(busy0, ours):
    """CPU seconds used by processes other than ours since busy0 (a sign of interference)."""
    return round(machine_busy_seconds() - busy0 - sum(v for v in ours.values() if v), 2)


def cmd_wait_idle(max_seconds):
    """Waits (at most max_seconds) until the machine has been nearly idle (< 0.25 core busy)
    for 3 consecutive seconds, so that timed runs do not compete with other work."""
    t0 = time.time()
    quiet, busy = 0, 0.0
    if max_seconds <= 0:
        return
    while time.time() - t0 < max_seconds:
        b0 = machine_busy_seconds()
        time.sleep(1)
        busy = machine_busy_seconds() - b0
        quiet = quiet + 1 if busy < 0.25 else 0
        if quiet >= 3:
            log(f"machine idle after {time.time() - t0:.0f}s")
            return
    log(f"machine still busy after {max_seconds}s (last second: {busy:.2f} cores busy); running anyway")


def parse_specs(spec):
    """'name=value,name=value' -> {name: value}."""
    out = {}
    for part in filter(None, (spec or "").split(",")):
        k, v = part.split("=", 1)
        out[k] = v
    return out


def parse_pids(spec):
    """'name=pid,name=pid' -> {name: pid}."""
    return {k: int(v) for k, v in parse_specs(spec).items()}


def cpu_delta(before, pids):
    res = {}
    for k, pid in pids.items():
        now = cpu_seconds(pid)
        if now is not None and before.get(k) is not None:
            res[k] = round(now - before[k], 2)
    return res


def handler_ops(c):
    """Handler_write/update/delete: row operations the server performed (MariaDB 10.11 has no
    Innodb_rows_* counters)."""
    rows = c.query("SHOW GLOBAL STATUS WHERE Variable_name IN "
                   "('Handler_write','Handler_update','Handler_delete')")
    return {r["Variable_name"].replace("Handler_", ""): int(r["Value"]) for r in rows}


def ops_delta(before, after):
    return {k: after[k] - before[k] for k in before}


def cmd_wait_native(port, end_file, end_pos, threads, timeout, out, cpu_pids=""):
    pids = parse_pids(cpu_pids)
    c = Client(port)
    c.query(f"SET GLOBAL slave_parallel_threads={int(threads)}")
    mode = c.value("SELECT @@slave_parallel_mode")
    rows0 = handler_ops(c)
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    busy0 = machine_busy_seconds()
    t0 = time.time()
    c.query("START SLAVE")
    result = {"threads": int(threads), "slave_parallel_mode": mode, "loadavg_before": os.getloadavg()[0]}
    polls = 0
    while True:
        st = c.query("SHOW SLAVE STATUS")
        polls += 1
        s = st[0] if st else {}
        now = time.time()
        if s.get("Relay_Master_Log_File") and reached(s["Relay_Master_Log_File"], s["Exec_Master_Log_Pos"], end_file, end_pos):
            result["seconds"] = round(now - t0, 3)
            break
        if s and s.get("Last_SQL_Errno", "0") != "0":
            result["error"] = f"SQL thread error {s['Last_SQL_Errno']}: {s['Last_SQL_Error']}"
            break
        if s and s.get("Last_IO_Errno", "0") != "0" and s.get("Slave_IO_Running") != "Yes":
            result["error"] = f"IO thread error {s['Last_IO_Errno']}: {s['Last_IO_Error']}"
            break
        if now - t0 > timeout:
            result["error"] = f"timeout after {timeout}s at {s.get('Relay_Master_Log_File')}:{s.get('Exec_Master_Log_Pos')}"
            break
        time.sleep(POLL)
    result["cpu_seconds"] = cpu_delta(cpu0, pids)
    result["other_cpu_seconds"] = other_cpu(busy0, result["cpu_seconds"])
    result["replica_handler_ops"] = ops_delta(rows0, handler_ops(c))
    result["polls"] = polls
    result["loadavg_after"] = os.getloadavg()[0]
    c.query("STOP SLAVE")
    c.close()
    with open(out, "w") as f:
        json.dump(result, f)
    log("native", result)


def fetch_metrics(log_path, out_path):
    """Saves fleetsync's /metrics (address from its start-up log line) and returns a few
    totals from it."""
    import urllib.request
    try:
        text = open(log_path, errors="replace").read()
        m = re.search(r"metrics=(\S+:\d+)", text)
        if not m:
            return {"error": "no metrics address in the log"}
        body = urllib.request.urlopen(f"http://{m.group(1)}/metrics", timeout=5).read().decode()
    except Exception as e:  # diagnostics only
        return {"error": str(e)}
    with open(out_path, "w") as f:
        f.write(body)
    res = {}
    for line in body.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        if name in ("fleetsync_apply_batch_seconds_count", "fleetsync_apply_batch_seconds_sum",
                    "fleetsync_binlog_events_total", "fleetsync_source_transactions_total",
                    "fleetsync_apply_rows_total", "fleetsync_apply_transactions_total",
                    "fleetsync_apply_errors_total", "fleetsync_pipeline_restarts_total"):
            res[name] = res.get(name, 0) + float(value)
    return res


# Log lines that mark the end of a process's start-up: the agent's binlog stream is open, the
# coordinator's Kafka consumer is assigned.
STARTED_MARKS = {"fleetsync": "binlog stream started", "agent": "binlog stream started",
                 "coordinator": "consuming "}


def started_seconds(log_path, mark, start):
    """Seconds from START (epoch) to the first log line containing MARK (its RFC 3339 UTC
    timestamp), or None."""
    import datetime
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                if mark in line:
                    ts = line.split()[0].rstrip("Z")
                    t = datetime.datetime.fromisoformat(ts[:26]).replace(tzinfo=datetime.timezone.utc)
                    return round(t.timestamp() - start, 3)
    except (OSError, ValueError, IndexError):
        return None
    return None


def cmd_baseline(port, cpu_pids, out):
    """Before fleetsync is spawned: CPU of CPU_PIDS (name=pid,...), the machine's busy time and
    the target's Handler counters, for wait-fleetsync (a short run can finish before that
    Python process has started and connected)."""
    pids = parse_pids(cpu_pids)
    c = Client(port)
    res = {"cpu": {k: cpu_seconds(p) for k, p in pids.items()}, "busy": machine_busy_seconds(),
           "handler": handler_ops(c)}
    c.close()
    with open(out, "w") as f:
        json.dump(res, f)


def cmd_wait_fleetsync(port, pid, start, end_file, end_pos, timeout, out, cpu_pids="", log_path=None,
                       baseline=None):
    """PID is fleetsync's pid (`fleetsync run`), or `name=pid,...` for several processes
    (Kafka bus: agent, coordinator, broker), each reported under its own name. LOG is one log
    path, or `name=path,...` matching those names (metrics saved as metrics-<name>.txt).
    BASELINE is a `baseline` file taken just before the spawn: CPU, machine and Handler
    counters count from it (a process of PID that is in it, such as the broker, by its delta;
    the others were spawned at START and count all their CPU)."""
    multi = "=" in str(pid)
    procs = parse_pids(pid) if multi else {"fleetsync": int(pid)}
    start = float(start)
    pids = parse_pids(cpu_pids)
    base = load(baseline) if baseline else None
    cpu0 = base["cpu"] if base else {k: cpu_seconds(p) for k, p in pids.items()}
    # fleetsync was spawned a moment ago: count its CPU since spawn (all of it) against the
    # machine's busy time since the same moment, approximately.
    busy0 = base["busy"] if base else machine_busy_seconds() - sum(cpu_seconds(p) or 0 for p in procs.values())
    c = Client(port)
    rows0 = base["handler"] if base else handler_ops(c)
    result = {"loadavg_before": os.getloadavg()[0]}
    polls = 0
    last = None
    while True:
        pos = c.value("SELECT position FROM fleetsync.sync_state WHERE sync_name='bench' AND source_name='src'")
        polls += 1
        now = time.time()
        if pos:
            last = pos
            binlog = pos.split("@", 1)[0]
            f, p = binlog.rsplit(":", 1)
            if reached(f, p, end_file, end_pos):
                result["seconds"] = round(now - start, 3)
                break
        dead = [k for k, p in procs.items() if not pid_alive(p)]
        if dead:
            who = "fleetsync" if not multi else ", ".join(dead)
            result["error"] = f"{who} (pid {', '.join(str(procs[k]) for k in dead)}) exited before catching up; last applied position {last}"
            break
        if now - start > timeout:
            result["error"] = f"timeout after {timeout}s; last applied position {last}"
            break
        time.sleep(POLL)
    result["polls"] = polls
    result["loadavg_after"] = os.getloadavg()[0]
    result["applied_position"] = last
    cpu = cpu_delta(cpu0, pids)
    if multi:
        result["peak_rss_kib_by_process"] = {k: read_vm(p, "VmHWM") for k, p in procs.items()}
        for k, p in procs.items():
            cpu[k] = cpu_seconds(p)
            if base and base["cpu"].get(k) is not None and cpu[k] is not None:
                cpu[k] = round(cpu[k] - base["cpu"][k], 2)
    else:
        result["peak_rss_kib"] = read_vm(procs["fleetsync"], "VmHWM")
        cpu["fleetsync"] = cpu_seconds(procs["fleetsync"])
    result["cpu_seconds"] = cpu
    result["other_cpu_seconds"] = other_cpu(busy0, cpu)
    result["target_handler_ops"] = ops_delta(rows0, handler_ops(c))
    logs = parse_specs(log_path) if log_path and "=" in log_path else {"fleetsync": log_path} if log_path else {}
    # Start-up inside the timed run: the clock starts at the spawn.
    result["started_seconds"] = {k: started_seconds(lp, STARTED_MARKS.get(k, "binlog stream started"), start)
                                 for k, lp in logs.items()}
    if log_path and "=" in log_path:
        result["metrics"] = {
            k: fetch_metrics(lp, os.path.join(os.path.dirname(lp), f"metrics-{k}.txt"))
            for k, lp in parse_specs(log_path).items()}
    elif log_path:
        result["metrics"] = fetch_metrics(log_path, os.path.join(os.path.dirname(log_path), "metrics.txt"))
    row = c.query("SELECT rows_applied, txns_applied FROM fleetsync.sync_state WHERE sync_name='bench'")
    if row:
        result["rows_applied"] = int(row[0]["rows_applied"])
        result["txns_applied"] = int(row[0]["txns_applied"])
    c.close()
    with open(out, "w") as f:
        json.dump(result, f)
    log("fleetsync", result)


def cmd_wait_topics(bootstrap, topics, expected, procs_spec, start, timeout, out, cpu_pids="", group=None):
    """Capture speed (the Debezium comparison): poll the broker every 50 ms until the sum of
    TOPICS' end offsets reaches EXPECTED messages (one per row event). With GROUP (a
    consumer group, e.g. Kafka Connect's `connect-<sink>`), also until that group has
    committed up to the end of every topic: the sink has written everything (end to end).
    PROCS (name=pid,...) are the measured processes (spawned at START, an epoch time): their
    whole CPU time and peak RSS (VmHWM) are reported; CPU_PIDS (name=pid,...) others whose CPU
    during the wait is reported. Also records when the first message appeared, so that the
    rate without start-up (`streaming_seconds`) can be given too."""
    topics = [t for t in topics.split(",") if t]
    expected, start, timeout = int(expected), float(start), float(timeout)
    procs, pids = parse_pids(procs_spec), parse_pids(cpu_pids)
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    busy0 = machine_busy_seconds() - sum(cpu_seconds(p) or 0 for p in procs.values())
    result = {"loadavg_before": os.getloadavg()[0], "topics": topics, "expected_messages": expected}
    kw = None
    first = None
    ends, done = {}, {}
    polls = 0
    while True:
        now = time.time()
        try:
            if kw is None:
                kw = KafkaWire(bootstrap)
            ends = kw.end_offsets(topics)
            total = sum(ends.values())
            if total > 0 and first is None:
                first = now
            ok = total >= expected
            if ok and group:
                done = kw.committed(group, topics)
                ok = all(done.get(t, 0) >= ends[t] for t in topics)
        except (OSError, RuntimeError, struct.error) as e:
            kw, ok = None, False
            result["last_poll_error"] = str(e)
        polls += 1
        if ok:
            result["seconds"] = round(now - start, 3)
            break
        dead = [k for k, p in procs.items() if not pid_alive(p)]
        if dead:
            result["error"] = f"{', '.join(dead)} exited before the end; end offsets {ends}, committed {done}"
            break
        if now - start > timeout:
            result["error"] = f"timeout after {timeout}s; end offsets {ends}, committed {done}"
            break
        time.sleep(POLL)
    if kw:
        kw.close()
    result["polls"] = polls
    result["loadavg_after"] = os.getloadavg()[0]
    result["end_offsets"] = ends
    if group:
        result["committed_offsets"] = done
    if first is not None:
        result["first_message_seconds"] = round(first - start, 3)
        if "seconds" in result:
            result["streaming_seconds"] = round(start + result["seconds"] - first, 3)
    cpu = cpu_delta(cpu0, pids)
    for k, p in procs.items():
        cpu[k] = cpu_seconds(p)
    result["cpu_seconds"] = cpu
    result["peak_rss_kib_by_process"] = {k: read_vm(p, "VmHWM") for k, p in procs.items()}
    result["other_cpu_seconds"] = other_cpu(busy0, cpu)
    with open(out, "w") as f:
        json.dump(result, f)
    log("wait-topics", result)


def cmd_kafka_ready(bootstrap, timeout):
    """Waits until the broker answers a Metadata request."""
    t0 = time.time()
    while True:
        try:
            kw = KafkaWire(bootstrap, timeout=2)
            kw.partitions(["__probe"])
            kw.close()
            return
        except (OSError, RuntimeError, struct.error) as e:
            if time.time() - t0 > float(timeout):
                sys.exit(f"kafka at {bootstrap} not ready after {timeout}s: {e}")
            time.sleep(0.3)


LAG_POLL = 0.02  # seconds between the lag observer's polls of the target


def lag_table_sql(table):
    return (f"CREATE TABLE {table} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            f"t_src DATETIME(6) NOT NULL, pad VARCHAR(100) NOT NULL) ENGINE=InnoDB")


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(q * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def lag_stats(vals):
    v = sorted(vals)
    ms = lambda x: round(x * 1000, 1) if x is not None else None
    return {"p50_ms": ms(pct(v, 0.50)), "p99_ms": ms(pct(v, 0.99)), "max_ms": ms(v[-1] if v else None),
            "mean_ms": ms(sum(v) / len(v) if v else None)}


def cmd_lag(src_port, dst_port, table, rate, seconds, txns_per_s, out, cpu_pids=""):
    """Steady-state lag: a writer inserts `rate` rows/s into TABLE on the source (autocommit
    INSERTs of rate/txns_per_s rows each, at txns_per_s fixed ticks, every row carrying
    t_src = NOW(6)) for `seconds`; an observer polls the target every LAG_POLL s for MAX(id)
    and records, per id, the target time of the first poll that saw it (and of the poll before,
    which did not). Lag of a row = that time - its t_src (same machine, same clock)."""
    import threading
    rate, seconds, txns_per_s = float(rate), float(seconds), float(txns_per_s)
    pids = parse_pids(cpu_pids)
    src, dst = Client(src_port), Client(dst_port)
    now_sql = "SELECT UNIX_TIMESTAMP(NOW(6))"
    poll_sql = f"SELECT COALESCE(MAX(id), 0) AS m, UNIX_TIMESTAMP(NOW(6)) AS t FROM {table}"
    # Warm-up probe: one row, wait until the target has it (pipeline connected and idle).
    src.query(f"INSERT INTO {table} (t_src, pad) VALUES (NOW(6), 'probe')")
    probe = int(src.value(f"SELECT MAX(id) FROM {table}"))
    t0 = time.time()
    while int(dst.query(poll_sql)[0]["m"]) < probe:
        if time.time() - t0 > 120:
            sys.exit(f"lag: the probe row never reached the target's {table}")
        time.sleep(LAG_POLL)
    log(f"lag {table}: probe row visible after {time.time() - t0:.2f}s; writing {rate:.0f} rows/s for {seconds:.0f}s")
    time.sleep(1)

    seen = []  # (first id, last id, time of the poll that did not see them, time of the first that did)
    state = {"writer_done": False, "last_id": None, "polls": 0, "poll_gaps": []}

    def observe():
        prev_max, prev_t = probe, float(dst.value(now_sql))
        while True:
            row = dst.query(poll_sql)[0]
            m, t = int(row["m"]), float(row["t"])
            state["polls"] += 1
            state["poll_gaps"].append(t - prev_t)
            if m > prev_max:
                seen.append((prev_max + 1, m, prev_t, t))
                prev_max = m
            prev_t = t
            if state["writer_done"] and state["last_id"] is not None and prev_max >= state["last_id"]:
                return
            if state["writer_done"] and time.time() - state["writer_done"] > 120:
                state["timeout"] = f"target at id {prev_max} of {state['last_id']} 120 s after the writer stopped"
                return
            time.sleep(LAG_POLL)

    obs = threading.Thread(target=observe, daemon=True)
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    busy0 = machine_busy_seconds()
    obs.start()
    pad = "x" * 80
    ticks = int(seconds * txns_per_s)
    sent, behind_max = 0, 0.0
    w0 = time.time()
    for i in range(ticks):
        due = w0 + i / txns_per_s
        d = due - time.time()
        if d > 0:
            time.sleep(d)
        else:
            behind_max = max(behind_max, -d)
        n = int(round(rate * (i + 1) / txns_per_s)) - sent
        if n <= 0:
            continue
        src.query(f"INSERT INTO {table} (t_src, pad) VALUES " + ",".join([f"(NOW(6),'{pad}')"] * n))
        sent += n
    w1 = time.time()
    state["last_id"] = int(src.value(f"SELECT MAX(id) FROM {table}"))
    state["writer_done"] = time.time()
    obs.join()
    cpu = cpu_delta(cpu0, pids)
    other = other_cpu(busy0, cpu)
    # Source commit times of every row (as replicated: read from the target).
    rows = dst.query(f"SELECT id, UNIX_TIMESTAMP(t_src) AS t FROM {table} WHERE id > {probe} ORDER BY id")
    t_src = {int(r["id"]): float(r["t"]) for r in rows}
    hi, lo, per_5s = [], [], {}
    for a, b, t_before, t_seen in seen:
        for i in range(a, b + 1):
            ts = t_src.get(i)
            if ts is None:
                continue
            hi.append(t_seen - ts)
            lo.append(max(0.0, t_before - ts))
            per_5s.setdefault(int((ts - w0) // 5), []).append(t_seen - ts)
    gaps = sorted(state["poll_gaps"])
    result = {
        "table": table,
        "rate_rows_per_s": round(rate), "transactions_per_s": txns_per_s,
        "rows_per_transaction": round(rate / txns_per_s, 1),
        "seconds": round(w1 - w0, 2), "rows": sent,
        "achieved_rows_per_s": round(sent / (w1 - w0)),
        "writer_max_behind_schedule_ms": round(behind_max * 1000, 1),
        "rows_measured": len(hi),
        "lag": lag_stats(hi),
        "lag_lower_bound": lag_stats(lo),
        "lag_p99_ms_per_5s": {f"{k * 5}-{k * 5 + 5}s": lag_stats(v)["p99_ms"] for k, v in sorted(per_5s.items())},
        "poll_interval_ms": {"p50": round(pct(gaps, 0.5) * 1000, 1) if gaps else None,
                             "p99": round(pct(gaps, 0.99) * 1000, 1) if gaps else None,
                             "max": round(gaps[-1] * 1000, 1) if gaps else None},
        "polls": state["polls"],
        "cpu_seconds": cpu, "other_cpu_seconds": other,
    }
    if "timeout" in state:
        result["error"] = state["timeout"]
    if len(hi) != sent:
        result.setdefault("error", f"{sent} rows written, {len(hi)} seen on the target")
    src.close()
    dst.close()
    with open(out, "w") as f:
        json.dump(result, f)
    log("lag", result)


def table_sums(port, tables=None):
    """{table: {checksum, rows}} of every base table of database `bench` on PORT (or of
    TABLES)."""
    c = Client(port)
    if tables is None:
        tables = [r["t"] for r in c.query("SELECT table_name AS t FROM information_schema.tables "
                                          "WHERE table_schema='bench' AND table_type='BASE TABLE' ORDER BY 1")]
    res = {}
    for t in tables:
        row = c.query(f"CHECKSUM TABLE bench.{t} EXTENDED")[0]
        cnt = c.value(f"SELECT COUNT(*) FROM bench.{t}")
        res[t] = {"checksum": row["Checksum"], "rows": int(cnt)}
    c.close()
    return res


def cmd_verify(port_a, port_b, out):
    a = table_sums(port_a)
    b = table_sums(port_b, list(a))
    mism = [t for t in a if a[t] != b[t]]
    result = {"verified": not mism, "mismatched_tables": mism}
    if mism:
        result["source"] = {t: a[t] for t in mism}
        result["copy"] = {t: b[t] for t in mism}
    with open(out, "w") as f:
        json.dump(result, f)
    log("verify", port_a, "vs", port_b, result, "| source:", a)


def cmd_state_sql(path):
    text = open(path).read()
    m = re.search(r'CREATE_STATE_TABLES: &str = "\\\n(.*?)";', text, re.S)
    if not m:
        sys.exit(f"cannot find CREATE_STATE_TABLES in {path}")
    print(m.group(1).replace('\\"', '"') + ";")


def load(path):
    with open(path) as f:
        return json.load(f)


def rate(rows, r):
    return round(rows / r["seconds"]) if r.get("seconds") else None


def contended(r):
    """Whether other processes used more than a quarter of a core on average during the run."""
    oc, sec = r.get("other_cpu_seconds"), r.get("seconds")
    return bool(oc is not None and sec and oc > 0.25 * sec)


def fleetsync_entry(work, suffix, rows):
    """The report entry of one fleetsync run: fleetsync.json (embedded bus) or
    fleetsync-kafka.json (Kafka bus), with its verification."""
    f = load(f"{work}/fleetsync{suffix}.json")
    fv = load(f"{work}/verify-fleetsync{suffix}.json")
    mib = lambda kib: round(kib / 1024, 1) if kib else None
    if suffix == "-kafka":
        by = f.get("peak_rss_kib_by_process") or {}
        broker = "Apache Kafka 4.4.0 (one KRaft node, separate process)"
        fs = {"bus": "kafka", "broker": broker,
              "seconds": f.get("seconds"), "rows_per_s": rate(rows, f), "verified": fv["verified"],
              "agent_rss_mib": mib(by.get("fleetsync_agent")),
              "coordinator_rss_mib": mib(by.get("fleetsync_coordinator")),
              "broker_rss_mib": mib(by.get("broker")),
              "note": "fleetsync agent and fleetsync coordinator as separate processes over "
                      + broker + " (topic fsk-<workload>.src, one partition); the clock "
                      "starts when the agent is spawned (coordinator right after); RSS figures "
                      "are each process's VmHWM"}
    else:
        rss = mib(f.get("peak_rss_kib"))
        fs = {"seconds": f.get("seconds"), "rows_per_s": rate(rows, f), "verified": fv["verified"],
              "peak_rss_mib": rss, "agent_rss_mib": rss, "coordinator_rss_mib": rss,
              "note": "fleetsync run hosts agent and coordinator in one process (embedded bus): "
                      "agent_rss_mib and coordinator_rss_mib are that one process's peak RSS (VmHWM)"}
    fs.update({
          "loadavg_1m": [f.get("loadavg_before"), f.get("loadavg_after")],
          "cpu_seconds": f.get("cpu_seconds"),
          "other_cpu_seconds": f.get("other_cpu_seconds"),
          "contended": contended(f),
          "target_handler_ops": f.get("target_handler_ops"),
          "metrics": f.get("metrics"),
          "applied_position": f.get("applied_position"),
          "rows_applied": f.get("rows_applied"), "txns_applied": f.get("txns_applied"),
          "started_seconds": f.get("started_seconds")})
    if "error" in f:
        fs["error"] = f["error"]
    if not fv["verified"]:
        fs["verify_detail"] = fv
    return fs


def debezium_report(work, rows, fs_kafka):
    """The Debezium comparison (BENCH_DEBEZIUM=1): capture only and end to end, from the JSON
    pieces catchup.sh left in WORK; None when it did not run."""
    if not os.path.exists(f"{work}/debezium-capture.json"):
        return None
    mib = lambda kib: round(kib / 1024, 1) if kib else None

    def entry(path, proc_names, verify=None):
        if not os.path.exists(path):
            return {"error": "no result (the phase failed before measuring)"}
        r = load(path)
        rss = r.get("peak_rss_kib_by_process") or {}
        cpu = r.get("cpu_seconds") or {}
        e = {"seconds": r.get("seconds"), "rows_per_s": rate(rows, r),
             "streaming_rows_per_s": (round(rows / r["streaming_seconds"])
                                      if r.get("streaming_seconds") else None),
             "first_message_seconds": r.get("first_message_seconds"),
             "cpu_seconds": round(sum(cpu.get(k) or 0 for k in proc_names), 2),
             "cpu_seconds_all": cpu,
             "peak_rss_mib": mib(sum(rss.get(k) or 0 for k in proc_names)),
             "other_cpu_seconds": r.get("other_cpu_seconds"), "contended": contended(r),
             "messages": r.get("end_offsets")}
        if verify:
            v = load(verify) if os.path.exists(verify) else {"verified": False}
            e["target_equals_source"] = v.get("verified")
            if not v.get("verified"):
                e["verify_detail"] = v
        if "error" in r:
            e["error"] = r["error"]
        return e

    capture = {
        "debezium": entry(f"{work}/debezium-capture.json", ["kafka_connect"]),
        "fleetsync": entry(f"{work}/fleetsync-capture.json", ["fleetsync_agent"]),
    }
    e2e = {"debezium": entry(f"{work}/debezium-e2e.json", ["kafka_connect"],
                             f"{work}/verify-debezium-e2e.json")}
    if fs_kafka:
        cpu = fs_kafka.get("cpu_seconds") or {}
        e2e["fleetsync"] = {
            "seconds": fs_kafka.get("seconds"), "rows_per_s": fs_kafka.get("rows_per_s"),
            "cpu_seconds": round((cpu.get("fleetsync_agent") or 0) + (cpu.get("fleetsync_coordinator") or 0), 2),
            "cpu_seconds_all": cpu,
            "peak_rss_mib": round((fs_kafka.get("agent_rss_mib") or 0) + (fs_kafka.get("coordinator_rss_mib") or 0), 1),
            "target_equals_source": fs_kafka.get("verified"),
            "contended": fs_kafka.get("contended")}
    ratio = lambda d: (round(d["fleetsync"]["rows_per_s"] / d["debezium"]["rows_per_s"], 3)
                       if d.get("fleetsync", {}).get("rows_per_s") and d["debezium"].get("rows_per_s") else None)
    # The contract: these key names, literally, in one object.
    contract = {
        "row_events": rows,
        "capture": {
            "debezium_rows_per_s": capture["debezium"].get("rows_per_s"),
            "fleetsync_rows_per_s": capture["fleetsync"].get("rows_per_s"),
            "ratio_vs_debezium": ratio(capture),
            "peak_rss_mib": {"debezium": capture["debezium"].get("peak_rss_mib"),
                             "fleetsync": capture["fleetsync"].get("peak_rss_mib")},
            "cpu_seconds": {"debezium": capture["debezium"].get("cpu_seconds"),
                            "fleetsync": capture["fleetsync"].get("cpu_seconds")},
        },
        "end_to_end": {
            "debezium_rows_per_s": e2e["debezium"].get("rows_per_s"),
            "fleetsync_rows_per_s": e2e.get("fleetsync", {}).get("rows_per_s"),
            "ratio_vs_debezium": ratio(e2e),
            "peak_rss_mib": {"debezium": e2e["debezium"].get("peak_rss_mib"),
                             "fleetsync": e2e.get("fleetsync", {}).get("peak_rss_mib")},
            "cpu_seconds": {"debezium": e2e["debezium"].get("cpu_seconds"),
                            "fleetsync": e2e.get("fleetsync", {}).get("cpu_seconds")},
            "target_equals_source": {"debezium": e2e["debezium"].get("target_equals_source"),
                                     "fleetsync": e2e.get("fleetsync", {}).get("target_equals_source")},
        },
    }
    return {
        "contract": contract,
        "capture": capture,
        "end_to_end": e2e,
        "versions": "Apache Kafka 4.4.0 broker; Kafka Connect 4.1.1 standalone; Debezium 3.5.0.Final "
                    "(debezium-connector-mariadb, debezium-connector-jdbc); MariaDB Connector/J 3.5.6",
        "method": "capture: each from the backlog's start (Debezium: snapshot.mode=no_data offset primed "
                  "before the backlog; fleetsync agent --start-at) into its own topics on the same broker, "
                  "clock from process spawn (JVM start-up included; streaming_rows_per_s leaves it out) "
                  "until the topics hold one message per row event; Debezium: JsonConverter schemas.enable="
                  + os.environ.get("BENCH_DEBEZIUM_SCHEMAS", "false") + ", no tombstones, lz4; fleetsync: its "
                  "bincode bus topic, lz4. End to end: Debezium source + JDBC sink (upsert, delete.enabled, "
                  "schemas on) in one Connect worker vs fleetsync agent + coordinator (the Kafka bus run), "
                  "into fresh copies of the starting data, clock until the sink's group committed every "
                  "message / fleetsync's applied position reached the end; CPU = utime+stime of the JVM / "
                  "of agent (+ coordinator); peak RSS = VmHWM (summed for agent + coordinator)",
    }


GOAL_RATIO = 1.5  # issue 13: at least 1.5x the best native replica on every workload
NATIVE_RUNS = ("threads_0", "threads_4")  # slave_parallel_threads of the two native runs


def cores_for_goal(fs, best):
    """CPU cores the run's own processes (fleetsync, its target server and, over Kafka, the
    broker) would need to apply GOAL_RATIO x the best native replica's rows/s at the CPU per
    row this run measured, with perfect parallelism: above the machine's cores, the goal is out
    of reach there unless the CPU per row drops."""
    c = fs.get("cpu_seconds") or {}
    used = sum(v for k, v in c.items() if v and (k.startswith("fleetsync") or k in ("target_mariadbd", "broker")))
    rows = (fs.get("rows_per_s") or 0) * (fs.get("seconds") or 0)
    if not rows or not best or not used:
        return None
    return round(GOAL_RATIO * best * used / rows, 2)


def contract_fields(native, runs):
    """The fields issue 13's contract names (native_rows_per_s, fleetsync_rows_per_s, ratio,
    peak_rss_mib, equal) and the matrix's summary, at the top of a workload's object.
    `fleetsync_*` and `ratio` are `fleetsync run` on the embedded bus, `fleetsync_kafka_*` and
    `ratio_kafka` the agent + coordinator over Kafka; when the Kafka run ran alone, the
    contract's `fleetsync_rows_per_s`, `ratio` and `peak_rss_mib` are its figures."""
    best = native["best_rows_per_s"]
    ratio = lambda fs: round(fs["rows_per_s"] / best, 3) if fs.get("rows_per_s") and best else None
    cpu = lambda fs, k: (fs.get("cpu_seconds") or {}).get(k)
    out = {"native_rows_per_s": best,
           "native_rows_per_s_by_threads": {k: native[k]["rows_per_s"] for k in NATIVE_RUNS},
           "native_replica_cpu_seconds": {k: cpu(native[k], "replica_mariadbd") for k in NATIVE_RUNS}}
    for fs in runs.values():
        kafka = fs.get("bus") == "kafka"
        p = "fleetsync_kafka" if kafka else "fleetsync"
        out[f"{p}_rows_per_s"] = fs.get("rows_per_s")
        out["ratio_kafka" if kafka else "ratio"] = ratio(fs)
        if kafka:
            out[f"{p}_peak_rss_mib"] = {"agent": fs.get("agent_rss_mib"),
                                        "coordinator": fs.get("coordinator_rss_mib")}
            out[f"{p}_cpu_seconds"] = {"agent": cpu(fs, "fleetsync_agent"),
                                       "coordinator": cpu(fs, "fleetsync_coordinator")}
        else:
            out[f"{p}_peak_rss_mib"] = fs.get("peak_rss_mib")
            out[f"{p}_cpu_seconds"] = cpu(fs, "fleetsync")
        out[f"{p}_target_cpu_seconds"] = cpu(fs, "target_mariadbd")
        out[f"{p}_equal"] = fs.get("verified")
    first = next(iter(runs.values()), {})
    if first.get("bus") == "kafka":  # the Kafka run alone: it answers the contract's fields
        out["fleetsync_rows_per_s"], out["ratio"] = out["fleetsync_kafka_rows_per_s"], out["ratio_kafka"]
        out["peak_rss_mib"] = max(filter(None, (first.get("agent_rss_mib"), first.get("coordinator_rss_mib"))), default=None)
    else:
        out["peak_rss_mib"] = first.get("peak_rss_mib")
    # Equal: every fleetsync target (each bus that ran) equals the source row by row.
    out["equal"] = bool(runs) and all(fs.get("verified") for fs in runs.values())
    out["native_equal"] = {k: native[k]["verified"] for k in NATIVE_RUNS}
    out["goal_ratio"] = GOAL_RATIO
    out["reaches_goal"] = {("kafka" if fs.get("bus") == "kafka" else "embedded"):
                           bool(ratio(fs) and ratio(fs) >= GOAL_RATIO) for fs in runs.values()}
    out["cores_for_goal"] = {("kafka" if fs.get("bus") == "kafka" else "embedded"):
                             cores_for_goal(fs, best) for fs in runs.values()}
    return out


def run_ok(r):
    """Whether every run of a workload's report finished and verified."""
    runs = [r["native"]["threads_0"], r["native"]["threads_4"]] + [r[k] for k in ("fleetsync", "fleetsync_kafka") if k in r]
    runs += [v for v in r.get("lag", {}).values() if isinstance(v, dict) and "error" in v]
    return all(x.get("verified", True) and x.get("seconds") and "error" not in x for x in runs)


def fmt_rate(v):
    return f"{v:,}" if v else "–"


def matrix_table(results):
    """The README's Markdown table of a matrix run."""
    head = ("| workload | row events | native, 0 threads | native, 4 threads | fleetsync run (embedded) | ratio "
            "| fleetsync over Kafka | ratio | peak RSS MiB: run / agent + coordinator "
            "| CPU s: fleetsync / target (embedded) | CPU s: native replica (best) | target equal |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in results:
        t = r["native_rows_per_s_by_threads"]
        best_th = max((th for th in t if t[th]), key=lambda th: t[th], default=None)
        rk = r.get("fleetsync_kafka_peak_rss_mib") or {}
        ratio = lambda k: f"**{r[k]:.2f}x**" if r.get(k) else "–"
        equal = ", ".join(f"{bus}: {'yes' if r.get(p + '_equal') else 'NO'}"
                          for p, bus in (("fleetsync", "embedded"), ("fleetsync_kafka", "Kafka")) if p + "_equal" in r)
        emb = "fleetsync_equal" in r  # an embedded run happened (else `ratio` is the Kafka run's)
        rows.append(f"| {r['name']} | {r['row_events']:,} | {fmt_rate(t.get('threads_0'))} "
                    f"| {fmt_rate(t.get('threads_4'))} | {fmt_rate(r.get('fleetsync_rows_per_s') if emb else None)} "
                    f"| {ratio('ratio') if emb else '–'} "
                    f"| {fmt_rate(r.get('fleetsync_kafka_rows_per_s'))} | {ratio('ratio_kafka')} "
                    f"| {r.get('fleetsync_peak_rss_mib') or '–'} / {rk.get('agent') or '–'} + {rk.get('coordinator') or '–'} "
                    f"| {r.get('fleetsync_cpu_seconds') or '–'} / {r.get('fleetsync_target_cpu_seconds') or '–'} "
                    f"| {(r.get('native_replica_cpu_seconds') or {}).get(best_th) or '–'} "
                    f"| {equal} |")
    return head + "\n".join(rows) + "\n"


def cmd_matrix(out, paths):
    """Merges the workloads' results into OUT (one object: matrix, table, ok) and prints the
    table to stderr."""
    results = [load(p) if os.path.exists(p) else None for p in paths]
    missing = [p for p, r in zip(paths, results) if r is None]
    results = [r for r in results if r]
    first = results[0] if results else {}
    table = matrix_table(results)
    combined = {
        "benchmark": "catchup-matrix",
        "date": first.get("date"),
        "machine": first.get("machine"),
        "fleetsync_build": first.get("fleetsync_build"),
        "settings": first.get("settings"),
        "workloads": [r["name"] for r in results],
        "ok": not missing and all(run_ok(r) for r in results),
        "comparable": all(r.get("comparable") for r in results),
        "missing": missing,
        "table": table,
        "matrix": results,
    }
    with open(out, "w") as fh:
        json.dump(combined, fh, indent=2)
        fh.write("\n")
    print(table, file=sys.stderr)


def cmd_report(work, out, workload="mixed"):
    """Assembles one workload's result from the JSON pieces catchup.sh left in WORK (its run
    directory), writes it to OUT and prints it as one line."""
    counts = load(f"{work}/counts.json")
    meta = load(f"{work}/meta.json")
    rows = counts["row_events"]
    native = {}
    for th in (0, 4):
        r = load(f"{work}/native-{th}.json")
        v = load(f"{work}/verify-native-{th}.json")
        e = {"seconds": r.get("seconds"), "rows_per_s": rate(rows, r), "verified": v["verified"],
             "slave_parallel_mode": r.get("slave_parallel_mode"),
             "loadavg_1m": [r.get("loadavg_before"), r.get("loadavg_after")],
             "cpu_seconds": r.get("cpu_seconds"),
             "other_cpu_seconds": r.get("other_cpu_seconds"),
             "contended": contended(r),
             "replica_handler_ops": r.get("replica_handler_ops")}
        if "error" in r:
            e["error"] = r["error"]
        if not v["verified"]:
            e["verify_detail"] = v
        native[f"threads_{th}"] = e
    ok = [e["rows_per_s"] for e in native.values() if e["rows_per_s"] and e["verified"]]
    native["best_rows_per_s"] = max(ok) if ok else None
    runs = {}  # JSON key -> entry, in the order they ran
    if os.path.exists(f"{work}/fleetsync.json"):
        runs["fleetsync"] = fleetsync_entry(work, "", rows)
    if os.path.exists(f"{work}/fleetsync-kafka.json"):
        # BENCH_BUS=kafka alone: the Kafka run takes the "fleetsync" key (same shape).
        key = "fleetsync_kafka" if runs else "fleetsync"
        runs[key] = fleetsync_entry(work, "-kafka", rows)
    result = {
        "benchmark": "catchup",
        "name": workload,
        "row_events": rows,
    }
    result.update(contract_fields(native, runs))
    result["native"] = native
    for key, fs in runs.items():
        result[key] = fs
        ratio = None
        if fs["rows_per_s"] and native["best_rows_per_s"]:
            ratio = round(fs["rows_per_s"] / native["best_rows_per_s"], 3)
        result[f"ratio_{key}_vs_native"] = ratio
    bus = os.environ.get("BENCH_BUS", "embedded")
    if bus != "embedded":
        result["bus"] = bus
    result.update({
        # False when another process used > 1/4 core on average during any timed run: the
        # figures then measure the machine's other work as much as replication.
        "comparable": not any(e.get("contended") for e in
                              (native["threads_0"], native["threads_4"], *runs.values())),
        "machine": {"cores": os.cpu_count(), "mariadb": meta["mariadb"]},
        "fleetsync_build": meta.get("fleetsync"),
        "workload": {
            "name": workload, "description": WORKLOADS[workload][0],
            "transactions": counts["transactions"], "statements": counts.get("statements"),
            "oltp_transactions": counts["oltp_txns"], "oltp_rows": counts["oltp_rows"],
            "bulk_transactions": counts["bulk_txns"], "bulk_rows": counts["bulk_rows"],
            "inserts": counts["inserts"], "updates": counts["updates"], "deletes": counts["deletes"],
            "handler_delta": meta.get("handler_delta"),
            "generate_seconds": meta.get("load_seconds"),
            "binlog_start": meta["start"], "binlog_end": meta["end"],
            "binlog_bytes": meta.get("binlog_bytes"),
            "starting_rows": STARTING_ROWS[WORKLOADS[workload][1]],
        },
        "settings": meta.get("settings"),
        "date": meta.get("date"),
    })
    if os.path.exists(f"{work}/lag.json"):
        result["lag"] = load(f"{work}/lag.json")
    dbz = debezium_report(work, rows, runs.get("fleetsync_kafka") or (
        runs.get("fleetsync") if runs.get("fleetsync", {}).get("bus") == "kafka" else None))
    if dbz:
        result["debezium"] = dbz
    with open(out, "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    print(json.dumps(result), flush=True)
    if dbz:
        # The one-line comparison object of the contract, after the full report.
        print(json.dumps(dbz["contract"]))


GNU_TIME = "/usr/bin/time"


def cmd_measure(out, name, log_path, cpu_pids, argv):
    """Runs argv under GNU time and measures it from the outside: wall time, its own CPU and
    peak RSS (time's %U+%S and %M: the kernel's rusage of the reaped process), the CPU the
    processes in cpu_pids spent meanwhile (servers it talks to) and the rest of the machine's
    (other_cpu_seconds: a sign of interference). Not wait4 on our own child: a child forked
    from Python starts with Python's RSS as its high-water mark (the kernel carries it across
    exec), GNU time's is ~1 MiB."""
    pids = parse_pids(cpu_pids)
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    busy0 = machine_busy_seconds()
    load0 = os.getloadavg()[0]
    usage_path = log_path + ".time"
    t0 = time.monotonic()
    with open(log_path, "wb") as so, open(log_path + ".err", "wb") as se:
        rc = subprocess.run([GNU_TIME, "-f", "%U %S %M", "-o", usage_path, *argv],
                            stdout=so, stderr=se, stdin=subprocess.DEVNULL).returncode
    secs = time.monotonic() - t0
    servers = cpu_delta(before, pids)
    busy = machine_busy_seconds() - busy0
    try:
        with open(usage_path) as f:
            utime, stime, maxrss_kib = f.read().split("\n")[-2].split()
        own, rss = float(utime) + float(stime), int(maxrss_kib) / 1024
    except (OSError, IndexError, ValueError):
        own, rss = None, None
    res = {
        "name": name,
        "command": os.path.basename(argv[0]),
        "exit_code": rc,
        "seconds": round(secs, 2),
        "cpu_seconds": round(own, 2) if own is not None else None,
        "peak_rss_mib": round(rss, 1) if rss is not None else None,
        "server_cpu_seconds": servers,
        "other_cpu_seconds": round(busy - (own or 0) - sum(servers.values()), 2),
        "loadavg_1m": [load0, os.getloadavg()[0]],
    }
    res["contended"] = res["other_cpu_seconds"] > 0.25 * secs
    with open(out, "w") as f:
        json.dump(res, f)
    log(f"{name}: {res['seconds']}s, {res['cpu_seconds']} CPU-s, peak RSS {res['peak_rss_mib']} MiB"
        + (f", exit status {rc}" if rc else ""))
    return rc


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


BACKUP_S3_RUNS = ("fleetsync_backup_local", "fleetsync_backup_bucket", "mydumper_local", "upload_mydumper",
                  "fleetsync_restore_local", "fleetsync_restore_bucket", "myloader_local")


def backup_s3_report(meta, runs):
    """backup_s3.sh's result: the runs by name, their sums (mydumper + upload), the time ratios
    the issue asks for and a table. meta: what the script knows (rows, sizes, exactness, ...)."""
    r = {x["name"]: x for x in runs}
    sec = {k: v["seconds"] for k, v in r.items() if v["exit_code"] == 0}

    def combined(*names):
        if not all(n in sec for n in names):
            return None
        return {
            "seconds": round(sum(r[n]["seconds"] for n in names), 2),
            "cpu_seconds": round(sum(r[n]["cpu_seconds"] or 0 for n in names), 2),
            "peak_rss_mib": {n: r[n]["peak_rss_mib"] for n in names},
            "server_cpu_seconds": {
                k: round(sum(r[n]["server_cpu_seconds"].get(k, 0) for n in names), 2)
                for k in sorted({k for n in names for k in r[n]["server_cpu_seconds"]})},
        }

    md = combined("mydumper_local", "upload_mydumper")
    ratios = {
        "backup_bucket_vs_local": _ratio(sec.get("fleetsync_backup_bucket"), sec.get("fleetsync_backup_local")),
        "backup_bucket_vs_mydumper_plus_upload": _ratio(sec.get("fleetsync_backup_bucket"), md and md["seconds"]),
        "restore_bucket_vs_local": _ratio(sec.get("fleetsync_restore_bucket"), sec.get("fleetsync_restore_local")),
        "restore_bucket_vs_myloader": _ratio(sec.get("fleetsync_restore_bucket"), sec.get("myloader_local")),
    }
    rows = meta.get("rows") or 0
    lines = ["| run | seconds | rows/s | CPU-s (own) | peak RSS MiB | CPU-s: S3 server / src / dst | other CPU-s |",
             "|---|---|---|---|---|---|---|"]
    for x in runs:
        s = x["server_cpu_seconds"]
        lines.append("| {}{} | {} | {} | {} | {} | {} / {} / {} | {} |".format(
            x["name"], " †" if x["contended"] else "",
            x["seconds"] if x["exit_code"] == 0 else f"FAILED (exit {x['exit_code']})",
            f"{round(rows / x['seconds']):,}" if x["seconds"] and x["exit_code"] == 0 else "–",
            x["cpu_seconds"], x["peak_rss_mib"],
            s.get("s3", "-"), s.get("src", "-"), s.get("dst", "-"), x["other_cpu_seconds"]))
    failed = [x["name"] for x in runs if x["exit_code"] != 0]
    not_run = [n for n in BACKUP_S3_RUNS if n not in r]
    exact = meta.get("restore_exact", {})
    ok = (not failed and not not_run and all(exact.get(n) for n in exact if n.startswith("fleetsync"))
          and not meta.get("secret_in_output"))
    return {
        "bench": "backup_s3",
        **meta,
        "ok": ok,
        "failed": failed,
        "not_run": not_run,
        "comparable": not any(x["contended"] for x in runs),
        "time_ratios": ratios,
        "runs": r,
        "mydumper_plus_upload": md,
        "table": "\n".join(lines),
        "notes": "time_ratios are seconds / seconds: above 1 means the first is slower; "
                 "peak_rss_mib is each process's own (ru_maxrss of the reaped child); "
                 "server_cpu_seconds: the S3 server (s3), the source (src) and target (dst) "
                 "mariadbd during the run; other_cpu_seconds: the rest of the machine "
                 "(a run marked contended, † in the table, had more than a quarter of a core of it)",
    }


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "freeport":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
        s.close()
    elif cmd == "schema":
        print(schema_sql(parse_workloads(a[1] if len(a) > 1 else "mixed")))
    elif cmd == "workloads":
        print(" ".join(parse_workloads(a[1] if len(a) > 1 else "all")))
    elif cmd == "gen":
        rows, sql_out, counts_out = int(a[1]), a[2], a[3]
        with open(sql_out, "w", buffering=1 << 20) as f:
            c = generate(a[4] if len(a) > 4 else "mixed", rows, f)
        with open(counts_out, "w") as f:
            json.dump(c, f)
        log("workload", c)
    elif cmd == "wait-idle":
        cmd_wait_idle(float(a[1]))
    elif cmd == "state-sql":
        cmd_state_sql(a[1])
    elif cmd == "wait-native":
        cmd_wait_native(a[1], a[2], a[3], a[4], float(a[5]), a[6], *a[7:8])
    elif cmd == "wait-fleetsync":
        cmd_wait_fleetsync(a[1], a[2], a[3], a[4], a[5], float(a[6]), a[7], *a[8:11])
    elif cmd == "baseline":
        cmd_baseline(a[1], a[2], a[3])
    elif cmd == "wait-topics":
        # wait-topics BOOTSTRAP TOPICS EXPECTED PROCS START TIMEOUT OUT [CPU_PIDS [GROUP]]
        cmd_wait_topics(a[1], a[2], a[3], a[4], a[5], a[6], a[7], *a[8:10])
    elif cmd == "kafka-ready":
        cmd_kafka_ready(a[1], a[2])
    elif cmd == "verify":
        cmd_verify(a[1], a[2], a[3])
    elif cmd == "lag-table-sql":
        print(lag_table_sql(a[1]) + ";")
    elif cmd == "lag":
        cmd_lag(a[1], a[2], a[3], a[4], a[5], a[6], a[7], *a[8:9])
    elif cmd == "lag-report":
        # lag-report OUT BUS=FILE...: merges the per-bus lag results into one object.
        res = {}
        for spec in a[2:]:
            k, v = spec.split("=", 1)
            res[k] = load(v) if os.path.exists(v) else {"error": "no result (phase failed before measuring)"}
        with open(a[1], "w") as f:
            json.dump(res, f)
    elif cmd == "report":
        cmd_report(a[1], a[2], *a[3:4])
    elif cmd == "matrix":
        cmd_matrix(a[1], a[2:])
    elif cmd == "measure":
        if len(a) < 7 or a[5] != "--":
            sys.exit("usage: measure OUT NAME LOG CPU_PIDS -- CMD...")
        sys.exit(cmd_measure(a[1], a[2], a[3], a[4], a[6:]))
    elif cmd == "backup-s3-report":
        meta = load(a[1])
        print(json.dumps(backup_s3_report(meta, [load(p) for p in a[2:]]), indent=2))
    elif cmd == "delete-topics":
        kw = KafkaWire(a[1])
        res = kw.delete_topics([t for t in a[2].split(",") if t])
        kw.close()
        if any(res.values()):
            sys.exit(f"delete-topics: error codes {res}")
    else:
        sys.exit(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main()
