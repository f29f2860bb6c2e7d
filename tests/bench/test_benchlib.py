#!/usr/bin/env python3
"""Quick tests of benchlib's pure parts (no server): workload selection, the generators' exact
row counts, and the per-workload contract fields and table. Run:
`python3 -m unittest discover -s tests/bench -p 'test_*.py'` (about a second). The benchmark
itself cross-checks the generators against the source's Handler counters on every run."""

import io
import re
import unittest

import benchlib


class Workloads(unittest.TestCase):
    def test_all_and_order(self):
        self.assertEqual(benchlib.parse_workloads("all"), list(benchlib.WORKLOADS))
        # The matrix's order, whatever the list's; duplicates and spaces are fine.
        self.assertEqual(benchlib.parse_workloads(" mixed, bulk ,mixed"), ["bulk", "mixed"])

    def test_unknown_is_refused(self):
        with self.assertRaises(SystemExit) as e:
            benchlib.parse_workloads("bulk,nope")
        self.assertIn("unknown workload nope", str(e.exception))
        with self.assertRaises(SystemExit):
            benchlib.parse_workloads(",")

    def test_schema_creates_each_table_once(self):
        sql = benchlib.schema_sql(["oltp", "bulk", "update", "mixed"])
        self.assertEqual(sql.count("CREATE DATABASE bench"), 1)
        self.assertEqual(sql.count("CREATE TABLE sbtest"), 1)
        self.assertEqual(sql.count("CREATE TABLE accounts"), 1)
        self.assertNotIn("CREATE TABLE wide", sql)

    def test_wide_has_thirty_columns(self):
        body = benchlib.WIDE_SQL.split("CREATE TABLE wide (", 1)[1].split(") ENGINE", 1)[0]
        self.assertEqual(len(re.findall(r"\b(?:id|[a-z]+\d?) (?:BIGINT|INT|DECIMAL|DOUBLE|VARCHAR|DATETIME|DATE|TEXT|BLOB|JSON)\b", body)), 30)


class Generators(unittest.TestCase):
    def gen(self, name, rows):
        out = io.StringIO()
        c = benchlib.generate(name, rows, out)
        return c, out.getvalue()

    def test_counts_add_up_and_reach_the_target(self):
        for name, (_, _, _, share) in benchlib.WORKLOADS.items():
            with self.subTest(name):
                c, sql = self.gen(name, 60_000)
                self.assertGreaterEqual(c["row_events"], int(60_000 * share))
                self.assertEqual(c["row_events"], c["inserts"] + c["updates"] + c["deletes"])
                self.assertEqual(sql.count("COMMIT;"), c["transactions"])

    def test_shapes(self):
        c, sql = self.gen("bulk", 20_000)
        self.assertEqual((c["transactions"], c["inserts"]), (2, 20_000))
        c, sql = self.gen("update", 100_000)
        self.assertEqual((c["transactions"], c["updates"]), (2, 100_000))
        self.assertEqual(sql.count("UPDATE sbtest SET k=k+1 WHERE id BETWEEN"), 2)
        c, _ = self.gen("oltp", 5_000)
        self.assertEqual(c["bulk_rows"], 0)
        self.assertLessEqual(c["statements"], 5 * c["transactions"])

    def test_deterministic(self):
        self.assertEqual(self.gen("fk", 5_000)[1], self.gen("fk", 5_000)[1])


def native(r0, r4, ok=True):
    e = lambda r: {"rows_per_s": r, "verified": ok, "seconds": 1.0, "cpu_seconds": {"replica_mariadbd": 2.0}}
    n = {"threads_0": e(r0), "threads_4": e(r4)}
    n["best_rows_per_s"] = max(r0, r4) if ok else None
    return n


class Contract(unittest.TestCase):
    EMB = {"rows_per_s": 150, "seconds": 2.0, "verified": True, "peak_rss_mib": 30.0,
           "cpu_seconds": {"fleetsync": 1.0, "target_mariadbd": 2.5}}
    KAFKA = {"bus": "kafka", "rows_per_s": 50, "verified": False, "agent_rss_mib": 40.0,
             "coordinator_rss_mib": 80.0, "cpu_seconds": {"fleetsync_agent": 1.0, "fleetsync_coordinator": 0.5}}

    def test_both_buses(self):
        f = benchlib.contract_fields(native(80, 100), {"fleetsync": self.EMB, "fleetsync_kafka": self.KAFKA})
        self.assertEqual((f["native_rows_per_s"], f["fleetsync_rows_per_s"], f["ratio"]), (100, 150, 1.5))
        self.assertEqual((f["fleetsync_kafka_rows_per_s"], f["ratio_kafka"]), (50, 0.5))
        self.assertEqual(f["peak_rss_mib"], 30.0)
        self.assertEqual(f["fleetsync_kafka_peak_rss_mib"], {"agent": 40.0, "coordinator": 80.0})
        self.assertFalse(f["equal"])  # the Kafka target differs
        self.assertEqual(f["reaches_goal"], {"embedded": True, "kafka": False})
        # 300 rows for 3.5 CPU-s; 1.5 x 100 rows/s needs 1.75 cores; no seconds: unknown.
        self.assertEqual(f["cores_for_goal"], {"embedded": 1.75, "kafka": None})
        table = benchlib.matrix_table([dict(f, name="bulk", row_events=1000)])
        self.assertIn("| bulk | 1,000 | 80 | 100 | 150 | **1.50x** | 50 | **0.50x** | 30.0 / 40.0 + 80.0 |", table)
        self.assertIn("Kafka: NO", table)

    def test_kafka_alone_answers_the_contract(self):
        f = benchlib.contract_fields(native(100, 80), {"fleetsync": self.KAFKA})
        self.assertEqual((f["fleetsync_rows_per_s"], f["ratio"], f["peak_rss_mib"]), (50, 0.5, 80.0))
        self.assertNotIn("fleetsync_equal", f)
        row = benchlib.matrix_table([dict(f, name="fk", row_events=10)]).splitlines()[-1]
        self.assertTrue(row.startswith("| fk | 10 | 100 | 80 | – | – | 50 | **0.50x** |"), row)

    def test_no_verified_native_gives_no_ratio(self):
        f = benchlib.contract_fields(native(100, 80, ok=False), {"fleetsync": self.EMB})
        self.assertIsNone(f["ratio"])
        self.assertEqual(f["reaches_goal"], {"embedded": False})


def s3run(name, seconds, code=0, contended=False, s3=0.5):
    return {"name": name, "exit_code": code, "seconds": seconds, "cpu_seconds": seconds / 2,
            "peak_rss_mib": 10.0, "server_cpu_seconds": {"s3": s3, "src": 1.0, "dst": 2.0},
            "other_cpu_seconds": 0.1, "contended": contended}


class BackupS3Report(unittest.TestCase):
    SECONDS = {"fleetsync_backup_local": 10, "fleetsync_backup_bucket": 15, "mydumper_local": 20,
               "upload_mydumper": 5, "fleetsync_restore_local": 8, "fleetsync_restore_bucket": 12,
               "myloader_local": 24}
    EXACT = {"fleetsync_restore_local": True, "fleetsync_restore_bucket": True, "myloader_local": False}

    def runs(self, **over):
        return [over.get(n, s3run(n, s)) for n, s in self.SECONDS.items()]

    def test_ratios_sums_and_table(self):
        rep = benchlib.backup_s3_report({"rows": 1000, "restore_exact": self.EXACT}, self.runs(
            upload_mydumper=s3run("upload_mydumper", 5, contended=True, s3=2.0)))
        self.assertEqual(rep["time_ratios"], {
            "backup_bucket_vs_local": 1.5, "backup_bucket_vs_mydumper_plus_upload": 0.6,
            "restore_bucket_vs_local": 1.5, "restore_bucket_vs_myloader": 0.5})
        md = rep["mydumper_plus_upload"]
        self.assertEqual((md["seconds"], md["cpu_seconds"]), (25, 12.5))
        self.assertEqual(md["server_cpu_seconds"], {"dst": 4.0, "s3": 2.5, "src": 2.0})
        self.assertEqual(md["peak_rss_mib"], {"mydumper_local": 10.0, "upload_mydumper": 10.0})
        # myloader's inexact restore is reported, not a failure; the contended run is marked.
        self.assertTrue(rep["ok"])
        self.assertFalse(rep["comparable"])
        self.assertIn("| upload_mydumper † | 5 | 200 | 2.5 | 10.0 | 2.0 / 1.0 / 2.0 | 0.1 |", rep["table"])

    def test_failures_missing_runs_and_the_secret_fail_the_run(self):
        runs = self.runs(fleetsync_backup_bucket=s3run("fleetsync_backup_bucket", 1, code=1))
        runs = [r for r in runs if r["name"] != "fleetsync_restore_bucket"]
        rep = benchlib.backup_s3_report({"rows": 1, "restore_exact": self.EXACT}, runs)
        self.assertFalse(rep["ok"])
        self.assertEqual((rep["failed"], rep["not_run"]), (["fleetsync_backup_bucket"], ["fleetsync_restore_bucket"]))
        self.assertIsNone(rep["time_ratios"]["restore_bucket_vs_local"])
        self.assertIn("| fleetsync_backup_bucket | FAILED (exit 1) | – |", rep["table"])
        self.assertFalse(benchlib.backup_s3_report(
            {"rows": 1, "restore_exact": self.EXACT, "secret_in_output": True}, self.runs())["ok"])
        self.assertFalse(benchlib.backup_s3_report(
            {"rows": 1, "restore_exact": dict(self.EXACT, fleetsync_restore_bucket=False)}, self.runs())["ok"])


if __name__ == "__main__":
    unittest.main()
