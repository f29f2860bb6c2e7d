// Unit tests of the Overview / Jobs / Audit pages' pure logic (overview-logic.ts).
import { describe, expect, it } from "vitest";
import type { Schemas } from "../api/client";
import { appendPoints, auditQuery, canDecide, filterJobs, healthOrigin, localToRfc3339, roleWords, type ChartData } from "../pages/overview-logic";

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

describe("appendPoints", () => {
  it("appends only newer points, in place, and counts them", () => {
    const data: ChartData = [[], []];
    expect(appendPoints(data, [{ time: at(0), lag_seconds: 1 }, { time: at(5), lag_seconds: 2 }])).toBe(2);
    const xs = data[0];
    expect(appendPoints(data, [{ time: at(0), lag_seconds: 1 }, { time: at(5), lag_seconds: 2 }, { time: at(10), lag_seconds: 3 }])).toBe(1);
    expect(data[0]).toBe(xs);
    expect(data[1]).toEqual([1, 2, 3]);
    expect(appendPoints(data, [{ time: "not a time", lag_seconds: 9 }])).toBe(0);
  });

  it("drops the points older than an hour before the newest", () => {
    const data: ChartData = [[], []];
    appendPoints(data, [{ time: at(0), lag_seconds: 1 }, { time: at(100), lag_seconds: 2 }]);
    appendPoints(data, [{ time: at(3650), lag_seconds: 3 }]);
    expect(data[1]).toEqual([2, 3]);
  });
});

describe("words", () => {
  it("says a server's role", () => {
    expect(roleWords({ source_of: ["s1"], target_of: ["s2", "s3"] })).toBe("source of s1; target of s2, s3");
    expect(roleWords({ source_of: [], target_of: [] })).toBe("used by no sync");
  });

  it("says where a health verdict comes from and how old it is", () => {
    const base = { status: "fail", problems: [], job_id: null, checked_at: null, age_seconds: null, every_seconds: null };
    expect(healthOrigin({ ...base, source: "job", job_id: "j1", age_seconds: 125 })).toBe("health job j1, 2 min 5 s ago");
    expect(healthOrigin({ ...base, source: "periodic", every_seconds: 60 })).toBe("periodic checks (every 1 min 0 s)");
  });
});

const job = (over: Partial<Schemas["JobDoc"]>): Schemas["JobDoc"] =>
  ({
    id: "j1",
    kind: "backup_create",
    state: "awaiting_approval",
    created_by: "ops",
    params: {},
    created_at: at(0),
    progress: { phase: "", tables_done: 0, rows: 0 },
    approval: { permission: "backup:create" },
    ...over,
  }) as Schemas["JobDoc"];

describe("canDecide", () => {
  const owner = ["servers:read", "backup:create", "audit:read"];
  it("offers approve/reject to a role holding the job's permission", () => {
    expect(canDecide(job({}), owner)).toBe(true);
    expect(canDecide(job({}), ["servers:read", "syncs:control"])).toBe(false);
  });
  it("never to a read-only role, nor for a job not waiting", () => {
    expect(canDecide(job({ approval: { permission: "migration:read" } }), ["servers:read", "syncs:read", "migration:read"])).toBe(false);
    expect(canDecide(job({ state: "running" }), owner)).toBe(false);
    expect(canDecide(job({ approval: null }), owner)).toBe(false);
  });
});

describe("filters", () => {
  it("filters jobs by kind and state", () => {
    const jobs = [job({ id: "a" }), job({ id: "b", kind: "health", state: "succeeded" })];
    expect(filterJobs(jobs, "", "").length).toBe(2);
    expect(filterJobs(jobs, "health", "").map((j) => j.id)).toEqual(["b"]);
    expect(filterJobs(jobs, "", "awaiting_approval").map((j) => j.id)).toEqual(["a"]);
    expect(filterJobs(jobs, "health", "awaiting_approval")).toEqual([]);
  });

  it("turns the audit filters into query parameters, empty ones left out", () => {
    expect(auditQuery({ action: " pause_sync ", token: "", outcome: "", from: "", to: "", limit: 100 })).toEqual({
      action: "pause_sync",
      token: undefined,
      outcome: undefined,
      since: undefined,
      until: undefined,
      limit: 100,
    });
    const q = auditQuery({ action: "", token: "ops", outcome: "ok", from: "2026-01-01T10:00", to: "bad", limit: 50 });
    expect(q.token).toBe("ops");
    expect(q.since).toBe(new Date("2026-01-01T10:00").toISOString());
    expect(q.until).toBeUndefined();
    expect(localToRfc3339("")).toBeUndefined();
  });
});
