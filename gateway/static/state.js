// What the page shares between its modules: constants of the API's contract and the page state.

// Formats the page offers; the 3D view always loads SPZ. Renders (render=true) add two downloads.
export const FORMATS = ["ply", "ply-clean", "spz", "splat"];
export const PREVIEW_FORMAT = "spz";
export const RENDER_DOWNLOADS = ["preview", "orbit"];

// JobStatus.state and JobFile.state, word for word (gateway/service/job_rows.py), plus the page's
// own "expired": the job answered 404 (its results were removed after their time to live).
export const JOB_ENDED = new Set(["completed", "partial", "failed", "cancelled", "expired"]);
export const FILE_ENDED = new Set(["done", "failed", "cancelled"]);
export const POLL_MS = 1500;

export const state = {
  files: [], // File objects chosen, not yet submitted
  jobs: new Map(), // job id -> JobView
  viewer: null,
  previewing: null, // {jobId, index}
  userPicked: false, // the user chose a preview since the last submit
};
