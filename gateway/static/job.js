// One job on the page: its status (GET /v1/jobs/{id}) followed by server-sent events, or by polling
// when the stream breaks, rendered as the JobStatus the server sends (no renaming of its fields).

import { API, ApiError, apiFetch, apiKey, describeError, describeFileError, fetchJson, safeUrl, sameOrigin } from "./api.js";
import { $, el, showFormError } from "./dom.js";
import { openJobEvents } from "./events.js";
import { t } from "./i18n.js";
import { maybeAutoPreview, showPreview } from "./preview.js";
import { FILE_ENDED, FORMATS, JOB_ENDED, POLL_MS, PREVIEW_FORMAT, RENDER_DOWNLOADS, state } from "./state.js";

export class JobView {
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
    this.render({ job_id: this.id, state: "queued", progress: 0, error: null, archive_url: null,
      files: this.names.map((filename, index) => ({ index, filename, state: "pending", stage: null, error: null, error_code: null, downloads: {} })) });
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
    if (this.closed || (this.job && JOB_ENDED.has(this.job.state))) return;
    this.follow();
  }

  follow() {
    const onEvent = (name, data) => this.onEvent(name, data);
    const onBroken = () => {
      this.stream = null;
      if (!this.closed && !(this.job && JOB_ENDED.has(this.job.state))) this.poll();
    };
    this.mode = "sse";
    this.live.textContent = t("live.sse");
    this.stream = openJobEvents(this.eventsUrl, Boolean(apiKey()), onEvent, onBroken);
  }

  // `job` carries the whole JobStatus; `end` means the job ended or expired: read it once more.
  onEvent(name, data) {
    if (name === "job") this.render(data);
    else if (name === "end") this.refresh();
  }

  poll() {
    this.mode = "poll";
    this.live.textContent = t("live.poll");
    clearTimeout(this.pollTimer);
    const tick = async () => {
      if (this.closed) return;
      const delay = await this.refresh();
      if (this.closed || (this.job && JOB_ENDED.has(this.job.state))) return;
      this.pollTimer = setTimeout(tick, delay);
    };
    this.pollTimer = setTimeout(tick, POLL_MS);
  }

  // Returns how long to wait before the next poll.
  async refresh() {
    try {
      this.render(await fetchJson(this.statusUrl));
      this.error.hidden = true;
      return POLL_MS;
    } catch (err) {
      this.showError(`${t("err.job.load")}. ${describeError(err)}`);
      if (err instanceof ApiError && err.status === 404) {
        this.render({ ...(this.job || { job_id: this.id, files: [] }), state: "expired" });
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
    const percent = JOB_ENDED.has(stateName) ? "" : ` ${Math.round(job.progress * 100)}%`;
    this.badge.textContent = t(`state.${stateName}`) + percent;
    this.article.dataset.state = stateName;
    this.cancelButton.hidden = JOB_ENDED.has(stateName);
    const zip = safeUrl(job.archive_url);
    this.zipLink.hidden = !(zip && JOB_ENDED.has(stateName));
    if (zip) {
      this.zipLink.href = zip;
      this.zipLink.setAttribute("download", `mlsharp-${this.id.slice(0, 8)}.zip`);
    }
    if (job.error && stateName === "failed" && !job.files.some((f) => f.error)) this.showError(job.error);
    for (const file of job.files) this.renderFile(file);
    if (JOB_ENDED.has(stateName)) {
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
    view.item.dataset.stage = file.stage || "";
    view.name.textContent = file.filename;
    view.name.title = file.filename;
    const done = file.state === "done";
    // A running file says what it does (stage: inference, then render); its bar moves (no fraction).
    view.status.textContent = file.state === "running" && file.stage ? t(`stage.${file.stage}`) : t(`file.state.${file.state}`);
    if (done) view.bar.value = 100;
    else if (file.state === "running") view.bar.removeAttribute("value");
    else view.bar.value = 0;
    view.bar.hidden = FILE_ENDED.has(file.state);
    view.bar.setAttribute("aria-label", file.filename);
    view.error.textContent = file.error ? describeFileError(file.error, file.error_code) : "";
    view.error.hidden = !file.error;

    const spz = file.downloads[PREVIEW_FORMAT];
    const previewing = state.previewing && state.previewing.jobId === this.id && state.previewing.index === file.index;
    view.preview.hidden = !(done && spz);
    view.preview.textContent = previewing ? t("file.previewing") : t("file.preview");
    view.preview.setAttribute("aria-pressed", previewing ? "true" : "false");

    view.downloads.setAttribute("aria-label", t("file.downloads", { name: file.filename }));
    const links = [];
    if (done) {
      for (const fmt of [...FORMATS, "metadata", ...RENDER_DOWNLOADS]) {
        const url = safeUrl(file.downloads[fmt]);
        if (!url) continue;
        links.push(downloadLink(url, fmt, file.filename));
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

export function downloadLink(url, fmt, name) {
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

export function openJob(id, options = {}) {
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

