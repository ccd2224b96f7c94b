// This browser's earlier jobs (ids and file names only, in local storage).

import { $, el } from "./dom.js";
import { language, t } from "./i18n.js";
import { openJob } from "./job.js";

const HISTORY_KEY = "mlsharp.jobs";
const HISTORY_MAX = 30;

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

export function rememberJob(id, names) {
  const items = loadHistory().filter((x) => x.id !== id);
  items.unshift({ id, names: names.map(String).slice(0, 50), created: new Date().toISOString() });
  saveHistory(items);
}

export function renderHistory() {
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

