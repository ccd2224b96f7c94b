// The form: choosing photos (button or drop), formats, the render option, and submitting a job.

import { API, apiFetch, describeError } from "./api.js";
import { $, el, showFormError } from "./dom.js";
import { rememberJob } from "./history.js";
import { t } from "./i18n.js";
import { openJob } from "./job.js";
import { FORMATS, PREVIEW_FORMAT, state } from "./state.js";

const FORMATS_KEY = "mlsharp.formats";

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

export function renderFileList() {
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

export function setupDropzone() {
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

export function setupFormats() {
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


export async function submitJob(event) {
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
  if ($("render-option").checked) form.append("render", "true");

  const button = $("submit");
  button.disabled = true;
  button.textContent = t("submit.busy");
  const names = state.files.map((f) => f.name);
  try {
    const response = await apiFetch(`${API}/jobs`, { method: "POST", body: form });
    const body = await response.json();
    const id = body.job_id;
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

