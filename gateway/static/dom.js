// DOM helpers shared by the page's modules.
// Rule for the page's modules: text that comes from a user or the server is only ever put into the
// page with textContent or setAttribute; markup is never parsed from strings (a test checks the sinks).

export const $ = (id) => document.getElementById(id);

// Small DOM helper: el("li", {className: "x", dataset: {a: 1}, text: "..."}, ...children)

export function el(tag, props = {}, ...children) {
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


export function showFormError(message) {
  const box = $("form-error");
  box.textContent = message || "";
  box.hidden = !message;
}
