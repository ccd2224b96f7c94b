// The 3D view of one result, and beside it that result's rendered still and video (render=true).

import { ApiError, apiFetch, apiKey, describeError, fetchBytes, fetchJson, safeUrl, sameOrigin } from "./api.js";
import { $ } from "./dom.js";
import { t } from "./i18n.js";
import { PREVIEW_FORMAT, state } from "./state.js";

let stillUrl = null; // object URL of the still fetched with a key, revoked when replaced

export function viewerStatus(stateName, detail) {
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

export function showPreview(jobView, file) {
  const spz = safeUrl(file.downloads[PREVIEW_FORMAT]);
  if (!spz) return;
  state.previewing = { jobId: jobView.id, index: file.index };
  for (const view of state.jobs.values()) if (view.job) for (const f of view.job.files) view.renderFile(f);
  showRenders(file);
  state.viewer.show({
    name: file.filename,
    spzUrl: spz,
    metadataUrl: safeUrl(file.downloads.metadata),
    fetchBytes,
    fetchJson,
  });
}

// The first finished result of the newest job is shown automatically, unless the user chose one.
export function maybeAutoPreview(jobView) {
  if (state.userPicked) return;
  const newest = $("jobs").firstElementChild;
  if (!newest || newest !== jobView.article) return;
  if (state.previewing && state.previewing.jobId === jobView.id) return;
  const first = jobView.job.files.find((f) => f.state === "done" && f.downloads[PREVIEW_FORMAT]);
  if (first) showPreview(jobView, first);
}


// The still (an <img>; fetched as a blob when a key must be sent) and the video's download link.
async function showRenders(file) {
  const figure = $("render-figure");
  const img = $("render-preview");
  const video = $("render-video");
  const still = safeUrl(file.downloads.preview);
  const orbit = safeUrl(file.downloads.orbit);
  figure.hidden = !still;
  video.hidden = !orbit;
  if (orbit) {
    video.href = orbit;
    video.setAttribute("download", orbit.split("/").pop());
    video.textContent = t("render.video");
  }
  if (stillUrl) URL.revokeObjectURL(stillUrl);
  stillUrl = null;
  if (!still) {
    img.removeAttribute("src");
    return;
  }
  img.alt = t("render.still", { name: file.filename });
  if (!apiKey() || !sameOrigin(still)) {
    img.src = still;
    return;
  }
  try {
    const blob = await (await apiFetch(still, { headers: { Accept: "image/png" } })).blob();
    stillUrl = URL.createObjectURL(blob);
    img.src = stillUrl;
  } catch (err) {
    figure.hidden = true;
    viewerStatus("error", { error: err });
  }
}
