// Every target of a sync: state (with the snapshot's progress while it copies), lag, rows/s,
// rows applied, last error in words and what to do. Shared by the Overview and the Syncs page.
import type { Schemas } from "../api/client";
import { duration, failureWords, rate, stateTone, stateWords } from "../format";
import { snapshotProgress } from "./syncs-logic";

export function TargetsTable({ sync }: { sync: Schemas["SyncView"] }) {
  return (
    <table>
      <thead>
        <tr>
          <th>Target</th>
          <th>State</th>
          <th class="num">Lag</th>
          <th class="num">Rows/s</th>
          <th class="num">Rows applied</th>
          <th>Last error</th>
        </tr>
      </thead>
      <tbody>
        {sync.targets.map((t) => {
          const f = failureWords(t.failure);
          const snap = t.state === "snapshotting" && t.snapshot ? snapshotProgress(t.snapshot) : null;
          return (
            <tr data-testid={`target-${sync.name}-${t.target}`}>
              <td>{t.target}</td>
              <td>
                <span class={`badge ${stateTone(t.state)}`} data-testid="state" data-state={t.state}>
                  {stateWords(t.state)}
                </span>
                {snap && (
                  <div class="snap" data-testid="snapshot">
                    <progress max={100} value={snap.percent ?? undefined} aria-label={`snapshot of ${sync.name} to ${t.target}`} /> {snap.words}
                  </div>
                )}
              </td>
              <td class="num">{duration(t.lag_seconds)}</td>
              <td class="num" data-testid="rows-per-second" data-value={t.rows_per_second}>
                {rate(t.rows_per_second)}
              </td>
              <td class="num" data-testid="rows-applied" data-value={t.rows_applied}>
                {t.rows_applied.toLocaleString("en-US")}
              </td>
              <td>
                {f ? (
                  <>
                    <span class="error">{f.what}</span>
                    <br />
                    <span class="muted">What to do: {f.todo}</span>
                  </>
                ) : (
                  <span class="muted">none</span>
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
