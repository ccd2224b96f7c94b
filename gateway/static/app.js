// MLSharp web page: choose photos, submit a job to /v1/jobs, follow its progress (server-sent events,
// or polling), preview each result in 3D with its rendered still, and download it. This module wires
// the others together: api (HTTP and errors), events (SSE), job (one job), preview (3D view and
// renders), files (the form), history (earlier jobs), state (shared constants and state).

import { setupApiKey } from "./api.js";
import { $ } from "./dom.js";
import { setupDropzone, setupFormats, renderFileList, submitJob } from "./files.js";
import { renderHistory } from "./history.js";
import { applyTranslations, language, onLanguageChange, setLanguage, t } from "./i18n.js";
import { viewerStatus } from "./preview.js";
import { state } from "./state.js";
import { SplatViewer } from "./viewer.js";

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
