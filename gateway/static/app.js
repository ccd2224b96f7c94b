// MLSharp web page: choose photos, submit a job to /v1/jobs, follow its progress (server-sent events,
// or polling), preview each result in 3D and download it.
//
// Rule for this file: text that comes from a user or the server is only ever put into the page with
// textContent or setAttribute; markup is never parsed from strings (a test checks the sinks).

import { applyTranslations, language, onLanguageChange, setLanguage, t } from "./i18n.js";
import { SplatViewer } from "./viewer.js";

const API = "v1";
const FORMATS = ["ply", "ply-clean", "spz", "splat"];
const PREVIEW_FORMAT = "spz";
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "partial", "expired"]);
const HISTORY_KEY = "mlsharp.jobs";
const FORMATS_KEY = "mlsharp.formats";
const API_KEY_KEY = "mlsharp.apiKey";
const HISTORY_MAX = 30;
const POLL_MS = 1500;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Small DOM helper: el("li", {className: "x", dataset: {a: 1}, text: "..."}, ...children)

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// ---------------------------------------------------------------------------------------------
// API access

function apiKey() {
  try {
    return sessionStorage.getItem(API_KEY_KEY) || "";
  } catch {
    return "";
  }
}

function sameOrigin(url) {
  try {
    return new URL(url, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

// Only http(s) links are ever followed; the key is only ever sent to this page's own origin.
function safeUrl(url) {
  if (typeof url !== "string" || !url) return null;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

// The gateway takes an API key as X-API-Key (or Bearer); a JWT (three dot-separated parts) as Bearer.
function authHeaders(url) {
  const key = apiKey();
  if (!key || !sameOrigin(url)) return {};
  if (/^[\w-]+\.[\w-]+\.[\w-]+$/.test(key)) return { Authorization: `Bearer ${key}` };
  return { "X-API-Key": key };
}

class ApiError extends Error {
  constructor(status, message, { retryAfter = null, code = null } = {}) {
    super(message || "");
    this.status = status;
    this.retryAfter = retryAfter;
    this.code = code;
  }
}

async function apiFetch(url, options = {}) {
  let response;
  try {
    response = await fetch(url, {
      ...options,
      headers: { Accept: "application/json", ...authHeaders(url), ...(options.headers || {}) },
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "", { code: "network" });
  }
  if (!response.ok) {
    let message = "";
    let code = null;
    try {
      const body = await response.json();
      message = typeof body.message === "string" ? body.message : typeof body.detail === "string" ? body.detail : "";
      code = typeof body.code === "string" ? body.code : null;
    } catch {
      /* not JSON */
    }
    const retry = Number(response.headers.get("Retry-After"));
    throw new ApiError(response.status, message, { retryAfter: Number.isFinite(retry) ? retry : null, code });
  }
  return response;
}

async function fetchJson(url) {
  return (await apiFetch(url)).json();
}

async function fetchBytes(url) {
  return (await apiFetch(url, { headers: { Accept: "*/*" } })).arrayBuffer();
}

// Words a person understands: what kind of problem it is (from the server's error CODE, never
// from its English text), then the server's own message.
const NOT_IMAGE_CODES = new Set(["invalid_image", "unsupported_media_type"]);
const TOO_LARGE_CODES = new Set(["image_too_large", "payload_too_large"]);

function megabytes(bytes) {
  const mb = bytes / (1024 * 1024);
  return `${mb >= 10 ? Math.round(mb) : Math.round(mb * 10) / 10} MB`;
}

function problemPhrase(status, code, message) {
  const text = message || "";
  if (NOT_IMAGE_CODES.has(code) || status === 415) return t("err.not_image");
  if (TOO_LARGE_CODES.has(code) || status === 413) {
    // the kind is the code's; the message only supplies the number to show
    const limit = /limit (?:is|of) ([\d,]+) bytes/i.exec(text);
    if (limit) return t("err.too_large.max", { max: megabytes(Number(limit[1].replace(/,/g, ""))) });
    const files = /at most (\d+) files/i.exec(text);
    if (files) return t("err.too_many", { count: files[1] });
    return t("err.413");
  }
  if (!status) return "";
  const key = `err.${status}`;
  const phrase = t(key);
  if (phrase !== key) return phrase;
  return status >= 500 ? t("err.5xx") : t("err.other");
}

function joinPhrase(phrase, message) {
  if (!message) return phrase ? `${phrase}.` : "";
  if (!phrase) return message;
  return `${phrase}. ${message}`;
}

function describeError(err) {
  if (!(err instanceof ApiError)) return joinPhrase(t("err.other"), err && err.message ? err.message : "");
  if (err.code === "network" || err.status === 0) return t("err.network");
  let text = joinPhrase(problemPhrase(err.status, err.code, err.message), err.message);
  if (err.retryAfter) text += ` ${t("err.retry", { seconds: err.retryAfter })}`;
  return text;
}

// A per-file error inside a job (the server's message and its error_code).
function describeFileError(message, code) {
  return joinPhrase(problemPhrase(0, code, message), message);
}

// ---------------------------------------------------------------------------------------------
// Job JSON -> one normalised shape the page renders.

const STATE_ALIASES = {
  pending: "queued",
  queued: "queued",
  waiting: "queued",
  accepted: "queued",
  running: "running",
  processing: "running",
  started: "running",
  in_progress: "running",
  succeeded: "succeeded",
  success: "succeeded",
  completed: "succeeded",
  complete: "succeeded",
  done: "succeeded",
  finished: "succeeded",
  partial: "partial",
  partially_succeeded: "partial",
  failed: "failed",
  error: "failed",
  cancelled: "cancelled",
  canceled: "cancelled",
  expired: "expired",
};

function normState(value) {
  return STATE_ALIASES[String(value || "").toLowerCase()] || "unknown";
}

function normProgress(value) {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) return null;
  return n > 1 ? Math.min(1, n / 100) : n;
}

function errorText(value) {
  if (!value) return "";
  if (typeof value === "string") return value;
  if (typeof value === "object") return String(value.message || value.detail || value.error || "");
  return String(value);
}

function normDownloads(file) {
  const out = {};
  const source = file.downloads ?? file.urls ?? file.download_urls ?? file.outputs ?? file.files ?? {};
  if (Array.isArray(source)) {
    for (const item of source) {
      if (item && typeof item === "object" && item.format && item.url) out[String(item.format)] = item.url;
    }
  } else if (source && typeof source === "object") {
    for (const [fmt, value] of Object.entries(source)) {
      const url = typeof value === "string" ? value : value && typeof value === "object" ? value.url : null;
      if (url) out[fmt] = url;
    }
  }
  if (!out.metadata) {
    const meta = out.json ?? out["metadata.json"] ?? out.meta ?? file.metadata_url;
    if (meta) out.metadata = meta;
  }
  delete out.json;
  delete out["metadata.json"];
  delete out.meta;
  return out;
}

function normalizeJob(raw) {
  const files = (raw.files ?? raw.results ?? raw.items ?? []).map((file, index) => ({
    index: Number.isInteger(file.index) ? file.index : index,
    name: String(file.filename ?? file.name ?? file.file ?? `#${index + 1}`),
    state: normState(file.state ?? file.status),
    progress: normProgress(file.progress),
    stage: typeof file.stage === "string" ? file.stage : "",
    error: errorText(file.error ?? (normState(file.state ?? file.status) === "failed" ? file.message : "")),
    errorCode: typeof file.error_code === "string" ? file.error_code : null,
    downloads: normDownloads(file),
  }));
  const zip = raw.zip_url ?? raw.archive_url ?? (raw.downloads && raw.downloads.zip) ?? null;
  return {
    id: String(raw.job_id ?? raw.id ?? ""),
    state: normState(raw.state ?? raw.status),
    progress: normProgress(raw.progress),
    error: errorText(raw.error),
    files,
    zip,
    eventsUrl: raw.events_url ?? null,
  };
}

function looksLikeJob(data) {
  return data && typeof data === "object" && (data.job_id || data.id) && Array.isArray(data.files ?? data.results);
}

// ---------------------------------------------------------------------------------------------
// Server-sent events: EventSource without a key; with a key (EventSource cannot send headers) a
// fetch-based reader. Either way an event triggers a render (when it carries the whole job) or a
// refresh of GET /v1/jobs/{id}; when the stream breaks the job falls back to polling.

const EVENT_NAMES = ["message", "job", "progress", "state", "file", "update", "snapshot", "completed", "done", "end"];

function openEventSource(url, onEvent, onBroken) {
  const source = new EventSource(url);
  let closed = false;
  for (const name of EVENT_NAMES) source.addEventListener(name, (e) => onEvent(name, e.data));
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
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        let name = "message";
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") name = val;
          else if (field === "data") data.push(val);
        }
        if (data.length) onEvent(name, data.join("\n"));
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

// ---------------------------------------------------------------------------------------------
// Page state

const state = {
  files: [], // File objects chosen, not yet submitted
  jobs: new Map(), // job id -> JobView
  viewer: null,
  previewing: null, // {jobId, index}
  userPicked: false, // the user chose a preview since the last submit
};

// ---------------------------------------------------------------------------------------------
// Choosing files

function addFiles(list) {
  for (const file of list) {
    const duplicate = state.files.some(
      (f) => f.name === file.name && f.size === file.size && f.lastModified === file.lastModified,
    );
    if (!duplicate) state.files.push(file);
  }
  renderFileList();
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function renderFileList() {
  const list = $("file-list");
  list.replaceChildren(
    ...state.files.map((file, i) =>
      el(
        "li",
        { className: "file-item" },
        el("span", { className: "file-name", text: file.name, title: file.name }),
        el("span", { className: "file-size", text: formatBytes(file.size) }),
        el("button", {
          type: "button",
          className: "button small secondary",
          text: t("upload.remove"),
          "aria-label": t("upload.remove.label", { name: file.name }),
          on: {
            click: () => {
              state.files.splice(i, 1);
              renderFileList();
              (list.querySelector("button") || $("choose-files")).focus();
            },
          },
        }),
      ),
    ),
  );
  const count = state.files.length;
  $("file-count").textContent = count ? t(count === 1 ? "upload.count.one" : "upload.count", { count }) : t("upload.none");
  $("clear-files").hidden = state.files.length === 0;
}

function setupDropzone() {
  const zone = $("dropzone");
  const input = $("file-input");
  $("choose-files").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = "";
  });
  // Dropping anywhere on the page adds the files (instead of the browser opening them).
  let depth = 0;
  document.addEventListener("dragenter", (e) => {
    if (!e.dataTransfer || !Array.from(e.dataTransfer.types || []).includes("Files")) return;
    depth += 1;
    zone.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("dragging");
  });
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    zone.classList.remove("dragging");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
  });
  $("clear-files").addEventListener("click", () => {
    state.files = [];
    renderFileList();
    $("choose-files").focus();
  });
}

function setupFormats() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(FORMATS_KEY) || "null");
  } catch {
    saved = null;
  }
  const chosen = new Set(Array.isArray(saved) ? saved : ["ply", "spz"]);
  const box = $("format-choices");
  box.replaceChildren(
    ...FORMATS.map((fmt) => {
      const id = `format-${fmt}`;
      const input = el("input", { type: "checkbox", id, name: "format", value: fmt });
      input.checked = chosen.has(fmt);
      input.addEventListener("change", () => {
        try {
          localStorage.setItem(FORMATS_KEY, JSON.stringify(chosenFormats()));
        } catch {
          /* ignore */
        }
      });
      return el(
        "div",
        { className: "format-choice" },
        input,
        el(
          "label",
          { for: id },
          el("span", { className: "format-name", dataset: { i18n: `format.${fmt}` }, text: t(`format.${fmt}`) }),
          el("span", { className: "format-desc", dataset: { i18n: `format.${fmt}.desc` }, text: t(`format.${fmt}.desc`) }),
        ),
      );
    }),
  );
}

function chosenFormats() {
  return FORMATS.filter((fmt) => $(`format-${fmt}`).checked);
}

// ---------------------------------------------------------------------------------------------
// Submitting

function showFormError(message) {
  const box = $("form-error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function submitJob(event) {
  event.preventDefault();
  showFormError("");
  if (!state.files.length) {
    showFormError(t("err.none"));
    $("choose-files").focus();
    return;
  }
  const focalText = $("focal-value").value.trim();
  const focal = focalText ? Number(focalText) : null;
  if (focalText && !(Number.isFinite(focal) && focal > 0)) {
    showFormError(t("err.focal"));
    $("focal-value").focus();
    return;
  }
  const form = new FormData();
  for (const file of state.files) form.append("files", file, file.name);
  if (focal) form.append($("focal-unit").value === "px" ? "focal_px" : "focal_mm", String(focal));
  const formats = new Set(chosenFormats());
  formats.add(PREVIEW_FORMAT); // the preview needs it
  form.append("format", [...formats].join(","));

  const button = $("submit");
  button.disabled = true;
  button.textContent = t("submit.busy");
  const names = state.files.map((f) => f.name);
  try {
    const response = await apiFetch(`${API}/jobs`, { method: "POST", body: form });
    const body = await response.json();
    const id = String(body.job_id ?? body.id ?? "");
    if (!id) throw new ApiError(500, "no job id in the answer");
    rememberJob(id, names);
    state.files = [];
    renderFileList();
    state.userPicked = false;
    const view = openJob(id, { statusUrl: body.status_url, eventsUrl: body.events_url, names });
    view.article.scrollIntoView({ block: "nearest" });
  } catch (err) {
    showFormError(describeError(err));
  } finally {
    button.disabled = false;
    button.textContent = t("submit");
  }
}

// ---------------------------------------------------------------------------------------------
// One job on the page

class JobView {
  constructor(id, { statusUrl, eventsUrl, names = [] } = {}) {
    this.id = id;
    const own = (url, fallback) => (safeUrl(url) && sameOrigin(url) ? url : fallback);
    this.statusUrl = own(statusUrl, `${API}/jobs/${encodeURIComponent(id)}`);
    this.eventsUrl = own(eventsUrl, `${API}/jobs/${encodeURIComponent(id)}/events`);
    this.names = names;
    this.job = null;
    this.stream = null;
    this.pollTimer = null;
    this.refreshTimer = null;
    this.mode = null;
    this.closed = false;
    this.fileViews = new Map();
    this.build();
  }

  build() {
    this.title = el("h3", { className: "job-title" });
    this.badge = el("span", { className: "badge", role: "status", dataset: { state: "queued" } });
    this.live = el("p", { className: "job-live hint" });
    this.error = el("p", { className: "job-error alert", role: "alert", hidden: true });
    this.cancelButton = el("button", {
      type: "button",
      className: "button small secondary",
      on: { click: () => this.cancel() },
    });
    this.zipLink = el("a", { className: "button small secondary", hidden: true });
    this.closeButton = el("button", {
      type: "button",
      className: "button small secondary",
      on: { click: () => this.close() },
    });
    this.list = el("ol", { className: "job-files" });
    this.article = el(
      "article",
      { className: "job", dataset: { jobId: this.id }, tabIndex: -1 },
      el(
        "div",
        { className: "job-head" },
        el("div", {}, this.title, this.badge),
        el("div", { className: "job-actions" }, this.zipLink, this.cancelButton, this.closeButton),
      ),
      this.live,
      this.error,
      this.list,
    );
    this.labels();
    // Placeholders until the first answer: the names we sent.
    this.render({ id: this.id, state: "queued", progress: 0, error: "", zip: null,
      files: this.names.map((name, index) => ({ index, name, state: "queued", progress: 0, error: "", downloads: {} })) });
  }

  labels() {
    this.title.textContent = t("job.heading", { id: this.id.slice(0, 8) });
    this.title.title = this.id;
    this.cancelButton.textContent = t("job.cancel");
    this.closeButton.textContent = t("job.close");
    this.closeButton.setAttribute("aria-label", t("job.close.label", { id: this.id.slice(0, 8) }));
    this.zipLink.textContent = t("job.zip");
    this.live.textContent = this.mode ? t(this.mode === "sse" ? "live.sse" : "live.poll") : "";
    if (this.job) this.render(this.job);
  }

  async start() {
    await this.refresh();
    if (this.closed || (this.job && TERMINAL.has(this.job.state))) return;
    this.follow();
  }

  follow() {
    const onEvent = (name, data) => this.onEvent(name, data);
    const onBroken = () => {
      this.stream = null;
      if (!this.closed && !(this.job && TERMINAL.has(this.job.state))) this.poll();
    };
    this.mode = "sse";
    this.live.textContent = t("live.sse");
    if (apiKey() || typeof EventSource === "undefined") this.stream = openFetchStream(this.eventsUrl, onEvent, onBroken);
    else this.stream = openEventSource(this.eventsUrl, onEvent, onBroken);
  }

  onEvent(_name, data) {
    let parsed = null;
    try {
      parsed = JSON.parse(data);
    } catch {
      parsed = null;
    }
    if (looksLikeJob(parsed)) this.render(normalizeJob(parsed));
    else if (parsed && looksLikeJob(parsed.job)) this.render(normalizeJob(parsed.job));
    else this.scheduleRefresh();
  }

  scheduleRefresh() {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      await this.refresh();
    }, 250);
  }

  poll() {
    this.mode = "poll";
    this.live.textContent = t("live.poll");
    clearTimeout(this.pollTimer);
    const tick = async () => {
      if (this.closed) return;
      const delay = await this.refresh();
      if (this.closed || (this.job && TERMINAL.has(this.job.state))) return;
      this.pollTimer = setTimeout(tick, delay);
    };
    this.pollTimer = setTimeout(tick, POLL_MS);
  }

  // Returns how long to wait before the next poll.
  async refresh() {
    try {
      const raw = await fetchJson(this.statusUrl);
      this.render(normalizeJob(raw));
      this.error.hidden = true;
      return POLL_MS;
    } catch (err) {
      this.showError(`${t("err.job.load")}. ${describeError(err)}`);
      if (err instanceof ApiError && err.status === 404) {
        this.render({ ...(this.job || { id: this.id, files: [] }), state: "expired" });
      }
      return err instanceof ApiError && err.retryAfter ? err.retryAfter * 1000 : POLL_MS * 2;
    }
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  render(job) {
    this.job = job;
    const stateName = job.state;
    this.badge.dataset.state = stateName;
    const percent = job.progress != null && !TERMINAL.has(stateName) ? ` ${Math.round(job.progress * 100)}%` : "";
    this.badge.textContent = t(`state.${stateName}`) + percent;
    this.article.dataset.state = stateName;
    this.cancelButton.hidden = TERMINAL.has(stateName);
    const zip = safeUrl(job.zip);
    this.zipLink.hidden = !(zip && TERMINAL.has(stateName));
    if (zip) {
      this.zipLink.href = zip;
      this.zipLink.setAttribute("download", `mlsharp-${this.id.slice(0, 8)}.zip`);
    }
    if (job.error && stateName === "failed" && !job.files.some((f) => f.error)) this.showError(job.error);
    for (const file of job.files) this.renderFile(file);
    if (TERMINAL.has(stateName)) {
      if (this.stream) this.stream.close();
      this.stream = null;
      clearTimeout(this.pollTimer);
      this.live.textContent = "";
    }
    maybeAutoPreview(this);
  }

  renderFile(file) {
    let view = this.fileViews.get(file.index);
    if (!view) {
      view = {
        name: el("span", { className: "file-name" }),
        status: el("span", { className: "file-state" }),
        bar: el("progress", { max: 100, value: 0 }),
        error: el("p", { className: "file-error alert", role: "alert", hidden: true }),
        downloads: el("div", { className: "downloads", role: "group" }),
        preview: el("button", { type: "button", className: "button small", hidden: true }),
      };
      view.preview.addEventListener("click", () => {
        state.userPicked = true;
        showPreview(this, view.file);
      });
      view.item = el(
        "li",
        { className: "job-file" },
        el("div", { className: "file-head" }, view.name, view.status),
        view.bar,
        view.error,
        (view.actions = el("div", { className: "file-actions", hidden: true }, view.preview, view.downloads)),
      );
      this.fileViews.set(file.index, view);
      this.list.append(view.item);
    }
    view.file = file;
    view.item.dataset.state = file.state;
    view.item.dataset.index = String(file.index);
    view.name.textContent = file.name;
    view.name.title = file.name;
    const percent = file.progress != null ? Math.round(file.progress * 100) : null;
    const done = file.state === "succeeded";
    view.status.textContent =
      t(`state.${file.state}`) + (percent != null && !TERMINAL.has(file.state) ? ` ${percent}%` : "");
    // The API reports states per file, not fractions: a running file gets a moving (indeterminate) bar.
    if (done) view.bar.value = 100;
    else if (percent != null && percent > 0) view.bar.value = percent;
    else if (file.state === "running") view.bar.removeAttribute("value");
    else view.bar.value = 0;
    view.bar.hidden = TERMINAL.has(file.state);
    view.bar.setAttribute("aria-label", file.name);
    view.error.textContent = file.error ? describeFileError(file.error, file.errorCode) : "";
    view.error.hidden = !file.error;

    const spz = file.downloads[PREVIEW_FORMAT];
    const previewing = state.previewing && state.previewing.jobId === this.id && state.previewing.index === file.index;
    view.preview.hidden = !(done && spz);
    view.preview.textContent = previewing ? t("file.previewing") : t("file.preview");
    view.preview.setAttribute("aria-pressed", previewing ? "true" : "false");

    view.downloads.setAttribute("aria-label", t("file.downloads", { name: file.name }));
    const links = [];
    if (done) {
      for (const fmt of [...FORMATS, "metadata"]) {
        const url = safeUrl(file.downloads[fmt]);
        if (!url) continue;
        links.push(downloadLink(url, fmt, file.name));
      }
    }
    view.downloads.replaceChildren(...links);
    view.actions.hidden = links.length === 0 && view.preview.hidden;
  }

  async cancel() {
    try {
      await apiFetch(this.statusUrl, { method: "DELETE" });
      await this.refresh();
    } catch (err) {
      this.showError(describeError(err));
    }
  }

  close() {
    this.closed = true;
    if (this.stream) this.stream.close();
    clearTimeout(this.pollTimer);
    clearTimeout(this.refreshTimer);
    this.article.remove();
    state.jobs.delete(this.id);
    $("jobs-empty").hidden = state.jobs.size > 0;
    $("submit").focus();
  }
}

function fileNameFor(url, fallback) {
  try {
    const last = new URL(url).pathname.split("/").pop();
    return decodeURIComponent(last || fallback);
  } catch {
    return fallback;
  }
}

function downloadLink(url, fmt, name) {
  const fileName = fileNameFor(url, `${name}.${fmt}`);
  const link = el("a", {
    className: "button small secondary",
    href: url,
    download: fileName,
    dataset: { format: fmt },
    text: t(`format.${fmt}`),
    "aria-label": t("file.download.label", { format: t(`format.${fmt}`), name }),
  });
  // With an API key the link cannot carry the header: download through fetch instead.
  link.addEventListener("click", async (event) => {
    if (!apiKey() || !sameOrigin(url)) return;
    event.preventDefault();
    try {
      const blob = await (await apiFetch(url, { headers: { Accept: "*/*" } })).blob();
      const objectUrl = URL.createObjectURL(blob);
      const temp = el("a", { href: objectUrl, download: fileName, hidden: true });
      document.body.append(temp);
      temp.click();
      temp.remove();
      setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000);
    } catch (err) {
      showFormError(`${t("err.download")}. ${describeError(err)}`);
    }
  });
  return link;
}

function openJob(id, options = {}) {
  const existing = state.jobs.get(id);
  if (existing) {
    existing.article.focus();
    return existing;
  }
  const view = new JobView(id, options);
  state.jobs.set(id, view);
  $("jobs").prepend(view.article);
  $("jobs-empty").hidden = true;
  view.start();
  return view;
}

// ---------------------------------------------------------------------------------------------
// 3D preview

function viewerStatus(stateName, detail) {
  const status = $("viewer-status");
  const note = $("viewer-note");
  const name = detail.name || "";
  status.classList.toggle("alert", stateName === "error" || stateName === "nowebgl");
  if (stateName === "empty") status.textContent = t("viewer.empty");
  else if (stateName === "loading") status.textContent = t("viewer.loading", { name });
  else if (stateName === "settling" || stateName === "rendered") status.textContent = t("viewer.ready", { name });
  else if (stateName === "nowebgl") status.textContent = t("viewer.nowebgl");
  else if (stateName === "error") {
    const err = detail.error;
    const message = err instanceof ApiError ? describeError(err) : (err && err.message) || String(err);
    status.textContent = t("viewer.failed", { message });
  }
  if (stateName === "settling") {
    note.hidden = !(detail.info && detail.info.randomWeights);
    note.textContent = t("viewer.random");
  }
  $("viewer-reset").disabled = !(stateName === "settling" || stateName === "rendered");
}

function showPreview(jobView, file) {
  const spz = safeUrl(file.downloads[PREVIEW_FORMAT]);
  if (!spz) return;
  state.previewing = { jobId: jobView.id, index: file.index };
  for (const view of state.jobs.values()) if (view.job) for (const f of view.job.files) view.renderFile(f);
  state.viewer.show({
    name: file.name,
    spzUrl: spz,
    metadataUrl: safeUrl(file.downloads.metadata),
    fetchBytes,
    fetchJson,
  });
}

// The first finished result of the newest job is shown automatically, unless the user chose one.
function maybeAutoPreview(jobView) {
  if (state.userPicked) return;
  const newest = $("jobs").firstElementChild;
  if (!newest || newest !== jobView.article) return;
  if (state.previewing && state.previewing.jobId === jobView.id) return;
  const first = jobView.job.files.find((f) => f.state === "succeeded" && f.downloads[PREVIEW_FORMAT]);
  if (first) showPreview(jobView, first);
}

// ---------------------------------------------------------------------------------------------
// History of this browser's jobs (ids and file names only)

function loadHistory() {
  try {
    const items = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(items) ? items.filter((x) => x && typeof x.id === "string") : [];
  } catch {
    return [];
  }
}

function saveHistory(items) {
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(items.slice(0, HISTORY_MAX)));
  } catch {
    /* storage full or disabled */
  }
  renderHistory();
}

function rememberJob(id, names) {
  const items = loadHistory().filter((x) => x.id !== id);
  items.unshift({ id, names: names.map(String).slice(0, 50), created: new Date().toISOString() });
  saveHistory(items);
}

function renderHistory() {
  const items = loadHistory();
  const list = $("history");
  const dateFormat = new Intl.DateTimeFormat(language() === "zh" ? "zh-CN" : "en", {
    dateStyle: "medium",
    timeStyle: "short",
  });
  list.replaceChildren(
    ...items.map((item) => {
      const names = Array.isArray(item.names) ? item.names.map(String) : [];
      const created = new Date(item.created);
      const summary = names.slice(0, 3).join(", ") + (names.length > 3 ? ", …" : "");
      return el(
        "li",
        { className: "history-item", dataset: { jobId: item.id } },
        el(
          "div",
          { className: "history-text" },
          el("span", { className: "history-names", text: summary || item.id.slice(0, 8), title: names.join("\n") }),
          el("span", {
            className: "hint",
            text: `${Number.isNaN(created.getTime()) ? "" : dateFormat.format(created)} · ${t(names.length === 1 ? "history.files.one" : "history.files", {
              count: names.length,
            })}`,
          }),
        ),
        el("button", {
          type: "button",
          className: "button small",
          text: t("history.open"),
          "aria-label": t("history.open.label", { id: item.id.slice(0, 8) }),
          on: { click: () => openJob(item.id, { names }) },
        }),
        el("button", {
          type: "button",
          className: "button small secondary",
          text: t("history.forget"),
          "aria-label": t("history.forget.label", { id: item.id.slice(0, 8) }),
          on: {
            click: () => {
              saveHistory(loadHistory().filter((x) => x.id !== item.id));
              $("history-title").focus();
            },
          },
        }),
      );
    }),
  );
  $("history-empty").hidden = items.length > 0;
  $("history-clear").hidden = items.length === 0;
}

// ---------------------------------------------------------------------------------------------
// API key (session storage only)

function setupApiKey() {
  const input = $("api-key");
  input.value = apiKey();
  if (input.value) $("access").open = true;
  input.addEventListener("input", () => {
    try {
      if (input.value) sessionStorage.setItem(API_KEY_KEY, input.value.trim());
      else sessionStorage.removeItem(API_KEY_KEY);
    } catch {
      /* ignore */
    }
  });
  $("api-key-clear").addEventListener("click", () => {
    input.value = "";
    try {
      sessionStorage.removeItem(API_KEY_KEY);
    } catch {
      /* ignore */
    }
    input.focus();
  });
}

// ---------------------------------------------------------------------------------------------

function relabel() {
  renderFileList();
  renderHistory();
  for (const view of state.jobs.values()) view.labels();
  const viewerState = $("viewer").dataset.state;
  viewerStatus(viewerState, { name: state.viewer ? state.viewer.name : "" });
  if (state.viewer && state.viewer.canvas && state.viewer.name) {
    state.viewer.canvas.setAttribute("aria-label", t("viewer.canvas", { name: state.viewer.name }));
  }
}

function main() {
  applyTranslations();
  $("history-title").tabIndex = -1;
  $("lang-toggle").addEventListener("click", () => setLanguage(language() === "zh" ? "en" : "zh"));
  onLanguageChange(relabel);
  setupDropzone();
  setupFormats();
  setupApiKey();
  renderFileList();
  renderHistory();
  $("job-form").addEventListener("submit", submitJob);
  state.viewer = new SplatViewer($("viewer"), {
    onState: (s, detail) => {
      viewerStatus(s, detail);
      if (s === "settling" && state.viewer.canvas) {
        state.viewer.canvas.setAttribute("aria-label", t("viewer.canvas", { name: detail.name }));
      }
    },
  });
  $("viewer-reset").addEventListener("click", () => state.viewer.resetView());
  document.body.dataset.ready = "true";
}

main();
