// Unit tests of the dashboard's pure logic (Vitest, no DOM).
import { describe, expect, it } from "vitest";
import { fillPath } from "../api/client";
import { parseSse } from "../api/events";
import { duration, failureWords, jobProgress, rate, stateTone, stateWords } from "../format";

describe("parseSse", () => {
  it("splits events, keeps the unfinished rest, skips keep-alives", () => {
    const { events, rest } = parseSse(
      'event: sync_state\ndata: {"sync":"s1","state":"paused"}\n\n:keep-alive\n\nevent: job_progress\ndata: {"id"',
    );
    expect(events).toEqual([{ event: "sync_state", data: { sync: "s1", state: "paused" } }]);
    expect(rest).toBe('event: job_progress\ndata: {"id"');
    const next = parseSse(rest + ':"j1"}\n\n');
    expect(next.events).toEqual([{ event: "job_progress", data: { id: "j1" } }]);
    expect(next.rest).toBe("");
  });

  it("joins multi-line data, keeps colons, accepts CRLF and non-JSON data", () => {
    const { events } = parseSse("data: a:b\r\ndata: c\r\n\r\n");
    expect(events).toEqual([{ event: "message", data: "a:b\nc" }]);
  });
});

describe("fillPath", () => {
  it("substitutes and encodes path parameters", () => {
    expect(fillPath("/api/v1/syncs/{name}/pause", { name: "a b/c" })).toBe("/api/v1/syncs/a%20b%2Fc/pause");
    expect(fillPath("/api/v1/syncs")).toBe("/api/v1/syncs");
  });

  it("refuses a missing parameter", () => {
    expect(() => fillPath("/api/v1/jobs/{id}/log", {})).toThrow(/id missing/);
  });
});

describe("format", () => {
  it("says states in words, with a tone", () => {
    expect(stateWords("streaming")).toBe("Streaming changes");
    expect(stateWords("something_new")).toBe("something new");
    expect(stateTone("failed")).toBe("bad");
    expect(stateTone("paused")).toBe("warn");
    expect(stateTone("streaming")).toBe("good");
  });

  it("formats durations and rates", () => {
    expect(duration(0.1414)).toBe("141 ms");
    expect(duration(4.25)).toBe("4.3 s");
    expect(duration(185)).toBe("3 min 5 s");
    expect(duration(7800)).toBe("2 h 10 min");
    expect(duration(null)).toBe("–");
    expect(rate(3.14)).toBe("3.1");
    expect(rate(12345.6)).toBe("12,346");
  });

  it("puts a failure in plain words with what to do", () => {
    expect(failureWords(null)).toBeNull();
    const f = failureWords({ code: "source:purged", message: "the binlog is gone", retryable: false, since: "2026-01-01T00:00:00Z", hint: null });
    expect(f?.what).toMatch(/the binlog is gone \(source:purged; this stopped the sync/);
    expect(f?.todo).toMatch(/resume/);
    const g = failureWords({ code: "feed:bus", message: "x", retryable: true, since: "2026-01-01T00:00:00Z", hint: "check the broker" });
    expect(g?.what).toMatch(/keeps retrying/);
    expect(g?.todo).toBe("check the broker");
  });

  it("shows a job's progress, clamped", () => {
    const p = jobProgress({ phase: "copying", rows: 1500, rows_total: 3000, bytes: 0, tables_done: 1, tables_total: 2, percent: 150, eta_seconds: 12 });
    expect(p.percent).toBe(100);
    expect(p.words).toBe("copying · 1/2 tables · 1,500/3,000 rows · ETA 12.0 s");
    expect(jobProgress({ phase: "", rows: 0, bytes: 0, tables_done: 0 }).percent).toBeNull();
  });
});
