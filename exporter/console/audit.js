// The audit trail: every admin action, searchable by pool, action, actor, session and time, paged.
import { api } from "./api.js";
import { clock, fill, h, number } from "./dom.js";
import { errorPanel, go, link, render } from "./app.js";

const ACTIONS = ["", "unlock", "deactivate", "activate", "lock", "block"];
const PAGE_SIZE = 50;

function toIso(local) {
  if (!local) return undefined;
  const when = new Date(local);
  return Number.isNaN(when.getTime()) ? undefined : when.toISOString();
}

function toLocal(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}T${pad(when.getHours())}:${pad(when.getMinutes())}`;
}

export async function auditView(query) {
  const { pools } = await api.pools();
  const page = Math.max(1, Number(query.page) || 1);
  const field = (label, input) => h("label", { class: "field" }, label, input);
  const pool = h("select", { name: "pool" }, h("option", { value: "" }, "any"), pools.map((p) => h("option", { value: p.name }, p.name)));
  pool.value = query.pool || "";
  const action = h("select", { name: "action" }, ACTIONS.map((a) => h("option", { value: a }, a || "any")));
  action.value = query.action || "";
  const actor = h("input", { name: "actor", value: query.actor || "", autocomplete: "off", pattern: "[A-Za-z0-9_-]{1,64}" });
  const session = h("input", { name: "session_id", value: query.session_id || "", autocomplete: "off", pattern: "[0-9a-fA-F]{24}",
    class: "mono" });
  const since = h("input", { type: "datetime-local", name: "since", value: toLocal(query.since) });
  const until = h("input", { type: "datetime-local", name: "until", value: toLocal(query.until) });
  const form = h("form", { class: "filters", role: "search", onsubmit: (event) => {
    event.preventDefault();
    go(["audit"], { pool: pool.value, action: action.value, actor: actor.value.trim(), session_id: session.value.trim(),
      since: toIso(since.value), until: toIso(until.value) });
  } },
    field("Pool", pool), field("Action", action), field("Actor", actor), field("Session id", session),
    field("Since", since), field("Until", until),
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Search"), h("a", { href: "#/audit", class: "quiet" }, "Clear")));
  const listBox = h("div", { id: "list" });
  render(h("h1", {}, "Audit trail"), form, listBox);
  const params = { pool: query.pool, action: query.action, actor: query.actor, session_id: query.session_id,
    since: query.since, until: query.until, page, page_size: PAGE_SIZE };
  let data;
  try {
    data = await api.audit(params);
  } catch (error) {
    if (error.status === 401) throw error;
    listBox.replaceChildren(errorPanel(error));
    return;
  }
  if (!data.events.length) {
    listBox.replaceChildren(h("p", { class: "empty" }, "No recorded action matches these filters."));
    return;
  }
  const pages = Math.max(1, Math.ceil(data.total / data.page_size));
  fill(listBox,
    h("div", { class: "table-wrap" }, h("table", { class: "events" },
      h("caption", {}, `${number(data.total)} event(s), newest first`),
      h("thead", {}, h("tr", {}, ["Time", "Actor", "Action", "Pool", "Session", "Result", "State", "Reason"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, data.events.map((e) => h("tr", {},
        h("td", {}, clock(e.time)), h("td", {}, e.actor), h("td", {}, e.action, e.bulk ? " (bulk)" : ""), h("td", {}, e.pool),
        h("td", {}, e.session_id ? h("a", { href: link(["pools", e.pool, "sessions", e.session_id]), class: "mono" }, e.session_id.slice(-8)) : "—"),
        h("td", {}, e.result, e.repeats ? ` ×${e.repeats + 1}` : ""), h("td", {}, `${e.state_before || "?"} → ${e.state_after || "?"}`),
        h("td", {}, e.reason || "—")))))),
    pages > 1 ? h("nav", { class: "pager", "aria-label": "Pages" },
      h("a", { href: link(["audit"], { ...query, page: page - 1 }), class: page <= 1 ? "disabled" : null, "aria-disabled": page <= 1 ? "true" : null }, "← Newer"),
      h("span", {}, `Page ${page} of ${number(pages)}`),
      h("a", { href: link(["audit"], { ...query, page: page + 1 }), class: page >= pages ? "disabled" : null, "aria-disabled": page >= pages ? "true" : null }, "Older →")) : null);
}
