// The API's Server-Sent Events stream (`GET /api/v1/events`) read with fetch, because
// EventSource cannot send the Authorization header (and the token must stay out of URLs).
import type { Api } from "./client";

export type ApiEvent = { event: string; data: unknown };

/** Splits an SSE byte stream's text into events; returns the events and the unfinished rest. */
export function parseSse(buffer: string): { events: ApiEvent[]; rest: string } {
  const events: ApiEvent[] = [];
  const blocks = buffer.replace(/\r\n/g, "\n").split("\n\n");
  const rest = blocks.pop() ?? "";
  for (const block of blocks) {
    let event = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue; // keep-alive comment
      const [field, ...value] = line.split(":");
      const text = value.join(":").replace(/^ /, "");
      if (field === "event") event = text;
      else if (field === "data") data.push(text);
    }
    if (data.length === 0) continue;
    let parsed: unknown = data.join("\n");
    try {
      parsed = JSON.parse(parsed as string);
    } catch {
      // not JSON: keep the text
    }
    events.push({ event, data: parsed });
  }
  return { events, rest };
}

/** Time before reconnecting after the stream ended or failed. */
const RECONNECT_MS = 2000;

/**
 * Follows the event stream until `signal` aborts, reconnecting when it drops. `onEvent` gets
 * every event, and `{event: "open"}` on each (re)connection (the page reloads what it shows:
 * events sent while disconnected are lost).
 */
export async function follow(api: Api, onEvent: (e: ApiEvent) => void, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      const resp = await fetch("/api/v1/events", { headers: api.headers(), signal, cache: "no-store" });
      if (resp.ok && resp.body) {
        onEvent({ event: "open", data: null });
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const { events, rest } = parseSse(buffer + value);
          buffer = rest;
          events.forEach(onEvent);
        }
      }
    } catch {
      // aborted or dropped: reconnect below unless aborted
    }
    if (signal.aborted) return;
    await new Promise((r) => setTimeout(r, RECONNECT_MS));
  }
}
