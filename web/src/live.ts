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
  const reload = () => {
    loadRef.current().then(
      (d) => {
        setData(d);
        setError(null);
      },
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
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
