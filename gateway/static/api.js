// The gateway's HTTP API: the key (session storage), fetch with auth, and errors in words.

import { $ } from "./dom.js";
import { t } from "./i18n.js";

export const API = "v1";
const API_KEY_KEY = "mlsharp.apiKey";


export function apiKey() {
  try {
    return sessionStorage.getItem(API_KEY_KEY) || "";
  } catch {
    return "";
  }
}

export function sameOrigin(url) {
  try {
    return new URL(url, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

// Only http(s) links are ever followed; the key is only ever sent to this page's own origin.
export function safeUrl(url) {
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

export class ApiError extends Error {
  constructor(status, message, { retryAfter = null, code = null } = {}) {
    super(message || "");
    this.status = status;
    this.retryAfter = retryAfter;
    this.code = code;
  }
}

export async function apiFetch(url, options = {}) {
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

export async function fetchJson(url) {
  return (await apiFetch(url)).json();
}

export async function fetchBytes(url) {
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

export function describeError(err) {
  if (!(err instanceof ApiError)) return joinPhrase(t("err.other"), err && err.message ? err.message : "");
  if (err.code === "network" || err.status === 0) return t("err.network");
  let text = joinPhrase(problemPhrase(err.status, err.code, err.message), err.message);
  if (err.retryAfter) text += ` ${t("err.retry", { seconds: err.retryAfter })}`;
  return text;
}

// A per-file error inside a job (the server's message and its error_code).
export function describeFileError(message, code) {
  return joinPhrase(problemPhrase(0, code, message), message);
}



export function setupApiKey() {
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

