// A job's server-sent events (GET /v1/jobs/{id}/events): exactly two kinds, as the gateway sends
// them. `job`: data is the JobStatus JSON (the same body as GET /v1/jobs/{id}), sent on every
// change; `end`: data is {"job_id": ...}, sent once when the job has ended (or expired), then the
// stream closes. Comment lines are keep-alives. EventSource is used without a key; with a key
// (EventSource cannot send headers) a fetch-based reader parses the same wire format.

import { apiFetch } from "./api.js";

export const EVENTS = ["job", "end"];

function openEventSource(url, onEvent, onBroken) {
  const source = new EventSource(url);
  let closed = false;
  for (const name of EVENTS) source.addEventListener(name, (e) => onEvent(name, JSON.parse(e.data)));
  source.onerror = () => {
    if (closed) return;
    closed = true;
    source.close();
    onBroken();
  };
  return {
    close() {
      closed = true;
      source.close();
    },
  };
}

// One event block of the wire format -> [name, data text] (fields in any order; comments skipped).
function parseBlock(block) {
  let name = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  return [name, data.join("\n")];
}

function openFetchStream(url, onEvent, onBroken) {
  const controller = new AbortController();
  let closed = false;
  (async () => {
    const response = await apiFetch(url, { headers: { Accept: "text/event-stream" }, signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const [name, data] = parseBlock(buffer.slice(0, cut));
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        if (EVENTS.includes(name)) onEvent(name, JSON.parse(data));
      }
    }
  })()
    .catch(() => {})
    .finally(() => {
      if (!closed) {
        closed = true;
        onBroken();
      }
    });
  return {
    close() {
      closed = true;
      controller.abort();
    },
  };
}

// onEvent(name, parsed data) for each `job` and `end` event; onBroken() when the stream fails.
export function openJobEvents(url, withKey, onEvent, onBroken) {
  if (withKey || typeof EventSource === "undefined") return openFetchStream(url, onEvent, onBroken);
  return openEventSource(url, onEvent, onBroken);
}
