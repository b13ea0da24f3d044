// DOM and formatting helpers: elements from data, never from HTML strings.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

// replaceChildren without the holes: a view's optional parts are null when absent.
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

export const STATES = ["active", "in_use", "locked", "blocked", "inactive"];
export const STATE_LABEL = {
  active: "Active", in_use: "In use", locked: "Locked", blocked: "Blocked", inactive: "Inactive",
};

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, STATE_LABEL[state] || state);
}

// The server's clock minus ours, learnt from the Date header of each answer (countdowns use it).
let skew = 0;
export function learnSkew(dateHeader) {
  const server = Date.parse(dateHeader || "");
  if (!Number.isNaN(server)) skew = server - Date.now();
}
export function serverNow() {
  return Date.now() + skew;
}

export function duration(ms) {
  const negative = ms < 0;
  let s = Math.round(Math.abs(ms) / 1000);
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (s >= size) { parts.push(`${Math.floor(s / size)}${unit}`); s %= size; }
  }
  if (s || !parts.length) parts.push(`${s}s`);
  return (negative ? "-" : "") + parts.slice(0, 2).join(" ");
}

export function relative(iso) {
  if (!iso) return "never";
  const ms = Date.parse(iso) - serverNow();
  if (Number.isNaN(ms)) return String(iso);
  if (Math.abs(ms) < 1500) return "just now";
  return ms >= 0 ? `in ${duration(ms)}` : `${duration(-ms)} ago`;
}

export function clock(iso) {
  if (!iso) return "—";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  return when.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function percent(ratio) {
  return ratio === null || ratio === undefined ? "—" : `${(ratio * 100).toFixed(1)} %`;
}

export function number(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString();
}

// A live countdown: the element's text follows the time left until `iso` every second.
export function countdown(iso, done = "ended") {
  const el = h("time", { datetime: iso, class: "countdown" });
  const tick = () => {
    if (!el.isConnected && el.dataset.started) return;
    el.dataset.started = "1";
    const ms = Date.parse(iso) - serverNow();
    el.textContent = ms > 0 ? `in ${duration(ms)}` : done;
    if (ms > 0) setTimeout(tick, 1000);
  };
  tick();
  return el;
}
