// A page's data kept fresh: loaded at once, again on the API events that concern it (the SSE
// stream), and every `everyMs` for figures no event announces (rows/s is sampled every 5 s).
import { useEffect, useRef, useState } from "preact/hooks";
import type { Api } from "./api/client";
import { follow, type ApiEvent } from "./api/events";

export function useLive<T>(
  api: Api,
  load: () => Promise<T>,
  opts: { events: (e: ApiEvent) => boolean; everyMs: number },
): { data: T | null; error: string | null; reload: () => void } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const optsRef = useRef(opts);
  optsRef.current = opts;
  // Answers are shown in the order the loads were issued: one that finishes after a newer
  // load's answer was shown (older filters, an older state) is dropped.
  const issued = useRef(0);
  const shown = useRef(0);
  const reload = () => {
    const n = ++issued.current;
    const fresh = () => {
      if (n < shown.current) return false;
      shown.current = n;
      return true;
    };
    loadRef.current().then(
      (d) => {
        if (!fresh()) return;
        setData(d);
        setError(null);
      },
      (e: unknown) => {
        if (!fresh()) return;
        setError(e instanceof Error ? e.message : String(e));
      },
    );
  };
  useEffect(() => {
    const stop = new AbortController();
    reload();
    void follow(api, (e) => e.event === "open" || optsRef.current.events(e) ? reload() : undefined, stop.signal);
    const timer = setInterval(reload, optsRef.current.everyMs);
    return () => {
      stop.abort();
      clearInterval(timer);
    };
  }, [api]);
  return { data, error, reload };
}
