// The console's shell: the token, the router (hash routes), the sign-in form, dialogs and notices.
import { ApiError, adoptFragmentToken, api, clearToken, explain, setToken, token } from "./api.js";
import { fill, h } from "./dom.js";
import { auditView } from "./audit.js";
import { poolsView } from "./pools.js";
import { sessionView } from "./session.js";
import { sessionsView } from "./sessions.js";

const main = document.getElementById("main");
const toastEl = document.getElementById("toast");
const dialog = document.getElementById("dialog");
let generation = 0;
let cleanup = [];

// Every view registers its timers here; a new route stops the old view's.
export function onLeave(fn) {
  cleanup.push(fn);
}

export function current() {
  return generation;
}

export function toast(message, kind = "info") {
  toastEl.textContent = message;
  toastEl.className = `toast show ${kind}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { toastEl.className = "toast"; }, 8000);
}

export function errorPanel(error, retry) {
  const kind = error instanceof ApiError && error.status === 503 ? "unreachable" : "failed";
  return h("div", { class: `panel error ${kind}`, role: "alert" },
    h("p", {}, explain(error)),
    retry ? h("button", { type: "button", onclick: retry }, "Try again") : null);
}

// A modal asking for confirmation (and whatever fields `body` holds); resolves with the form's
// values, or null when cancelled. Escape cancels; focus returns where it was.
export function ask(title, body, okLabel = "Confirm") {
  return new Promise((resolve) => {
    const form = document.getElementById("dialog-form");
    document.getElementById("dialog-title").textContent = title;
    document.getElementById("dialog-body").replaceChildren(...body);
    document.getElementById("dialog-ok").textContent = okLabel;
    const before = document.activeElement;
    const finish = (values) => {
      form.removeEventListener("submit", submit);
      dialog.removeEventListener("cancel", cancel);
      if (dialog.open) dialog.close();
      if (before && before.focus) before.focus();
      resolve(values);
    };
    const submit = (event) => {
      event.preventDefault();
      if (event.submitter && event.submitter.value === "cancel") return finish(null);
      if (!form.reportValidity()) return undefined;
      return finish(Object.fromEntries(new FormData(form).entries()));
    };
    const cancel = (event) => { event.preventDefault(); finish(null); };
    form.addEventListener("submit", submit);
    dialog.addEventListener("cancel", cancel);
    dialog.showModal();
    const first = dialog.querySelector("#dialog-body input, #dialog-body textarea, #dialog-body select");
    (first || document.getElementById("dialog-ok")).focus();
  });
}

export function reasonField(label = "Reason (recorded in the audit trail)") {
  return h("label", { class: "field" }, label,
    h("textarea", { name: "reason", required: true, maxlength: "500", rows: "2", autocomplete: "off" }));
}

function signIn(message) {
  document.getElementById("signout").hidden = true;
  const input = h("input", {
    type: "password", name: "token", id: "token", required: true, minlength: "24", autocomplete: "off",
    spellcheck: "false",
  });
  const note = h("p", { class: message ? "error" : "muted", role: message ? "alert" : null, id: "signin-note" },
    message || "Paste an admin token. It stays in this tab only (sessionStorage) and is sent in the Authorization header.");
  const form = h("form", { class: "panel signin", onsubmit: async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    try {
      await api.pools();
    } catch (error) {
      clearToken();
      signIn(explain(error));
      return;
    }
    if (!location.hash || location.hash === "#/" || location.hash === "#/signin") location.hash = "#/pools";
    else route();
  } },
    h("h1", {}, "Sign in"),
    h("label", { class: "field", for: "token" }, "Admin token"), input,
    note,
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Sign in")));
  fill(main, form);
  input.focus();
}

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/pools";
  const [path, queryString] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: Object.fromEntries(new URLSearchParams(queryString || "")) };
}

export function go(parts, query = {}) {
  const path = parts.map(encodeURIComponent).join("/");
  const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const hash = `#/${path}${qs.toString() ? `?${qs}` : ""}`;
  if (location.hash === hash) route();
  else location.hash = hash;
}

export function link(parts, query = {}) {
  const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  return `#/${parts.map(encodeURIComponent).join("/")}${qs.toString() ? `?${qs}` : ""}`;
}

export async function route() {
  for (const fn of cleanup) fn();
  cleanup = [];
  generation += 1;
  if (!token()) {
    signIn();
    return;
  }
  document.getElementById("signout").hidden = false;
  const { parts, query } = parse();
  for (const a of document.querySelectorAll("[data-nav]")) {
    const on = (parts[0] || "pools") === a.dataset.nav;
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  let view;
  if (parts[0] === "audit") view = auditView(query);
  else if (parts[0] === "pools" && parts.length === 4 && parts[2] === "sessions") view = sessionView(parts[1], parts[3]);
  else if (parts[0] === "pools" && parts.length === 2) view = sessionsView(parts[1], query);
  else view = poolsView();
  try {
    await view;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      clearToken();
      signIn(explain(error));
      return;
    }
    fill(main, errorPanel(error, route));
  }
}

export function render(...children) {
  fill(main, ...children);
}

document.getElementById("signout").addEventListener("click", () => {
  clearToken();
  location.hash = "#/signin";
  signIn("Signed out.");
});
adoptFragmentToken();
window.addEventListener("hashchange", route);
route();
