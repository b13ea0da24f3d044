// A pool's sessions: filter by state, search, sort, page; select several and act on them; bulk
// unlock of a whole state with the dry-run count shown before the confirmation.
import { api, explain } from "./api.js";
import { STATES, STATE_LABEL, clock, countdown, fill, h, number, percent, relative, stateBadge } from "./dom.js";
import { ask, errorPanel, go, link, reasonField, render, toast } from "./app.js";

const ORDERS = {
  hold_desc: "Newest hold end first",
  hold_asc: "Soonest hold end first",
  last_use_asc: "Least recently used first",
  last_use_desc: "Most recently used first",
};
const HELD = ["in_use", "locked", "blocked"];
const PAGE_SIZE = 25;

function tabs(pool, query, stats) {
  const items = STATES.map((state) => [state, STATE_LABEL[state], stats ? stats.states[state] : null]);
  items.push(["underperforming", "Underperforming", null]);
  const selected = query.underperforming ? "underperforming" : query.state || "";
  return h("nav", { class: "tabs", "aria-label": "Filter by state" }, items.map(([key, label, count]) => {
    const target = key === "underperforming" ? { underperforming: "1" } : { state: key };
    return h("a", { href: link(["pools", pool], target), "aria-current": key === selected ? "page" : null },
      label, count === null ? null : h("span", { class: "tab-count" }, number(count)));
  }));
}

function toolbar(pool, query, poolInfo) {
  const searchable = poolInfo.search_fields.length > 0;
  const input = h("input", { type: "search", name: "q", id: "q", value: query.q || "", disabled: !searchable,
    placeholder: searchable ? `${poolInfo.search_fields.join(", ")} (start, or whole value with a read token)…` : "no search fields configured",
    autocomplete: "off" });
  const search = h("form", { class: "search", role: "search", onsubmit: (event) => {
    event.preventDefault();
    go(["pools", pool], { ...(query.state ? { state: query.state } : {}), q: input.value.trim(), order: query.order });
  } },
    h("label", { for: "q" }, "Search"), input,
    h("button", { type: "submit", disabled: !searchable }, "Search"),
    query.q ? h("a", { href: link(["pools", pool], { state: query.state || "locked" }), class: "quiet" }, "Clear") : null);
  const order = h("select", { id: "order", name: "order", disabled: !!query.underperforming, onchange: () => {
    go(["pools", pool], { ...query, order: order.value, page: 1 });
  } }, Object.entries(ORDERS).map(([key, label]) => h("option", { value: key }, label)));
  order.value = query.order || (HELD.includes(query.state) ? "hold_desc" : "last_use_asc");
  return h("div", { class: "toolbar" }, search, h("label", { class: "inline", for: "order" }, "Sort ", order));
}

async function runActions(pool, ids, action) {
  const extra = [];
  if (action === "lock" || action === "block") {
    extra.push(h("label", { class: "field" }, "Period in minutes",
      h("input", { type: "number", name: "minutes", min: "1", required: true, value: action === "lock" ? "10" : "480" })));
  }
  const values = await ask(`${action[0].toUpperCase()}${action.slice(1)} ${ids.length} session(s)`,
    [h("p", {}, `Every action is recorded in the audit trail with your token's name.`), ...extra, reasonField()],
    action[0].toUpperCase() + action.slice(1));
  if (!values) return null;
  const body = { reason: values.reason };
  if (values.minutes) body.period = { minutes: Number(values.minutes) };
  const outcome = { changed: 0, unchanged: 0, failed: [] };
  for (const id of ids) {
    try {
      const result = await api.act(pool, id, action, body);
      outcome[result.result] += 1;
    } catch (error) {
      outcome.failed.push(`${id}: ${explain(error)}`);
      if (error.status === 401 || error.status === 403) break;
    }
  }
  return outcome;
}

function report(outcome, what) {
  const text = `${what}: ${outcome.changed} changed, ${outcome.unchanged} unchanged, ${outcome.failed.length} failed`;
  toast(outcome.failed.length ? `${text}. ${outcome.failed[0]}` : text, outcome.failed.length ? "error" : "ok");
  return h("div", { class: `panel result ${outcome.failed.length ? "error" : "ok"}`, role: "status" },
    h("p", {}, text), outcome.failed.length ? h("ul", {}, outcome.failed.map((f) => h("li", {}, f))) : null);
}

async function bulkUnlock(pool, state, resultBox, reload) {
  let dry;
  try {
    dry = await api.bulkUnlock(pool, { state, dry_run: true });
  } catch (error) {
    resultBox.replaceChildren(errorPanel(error));
    return;
  }
  if (!dry.matched) {
    resultBox.replaceChildren(h("p", { class: "panel ok", role: "status" }, `No session is ${state} now: nothing to unlock.`));
    return;
  }
  if (dry.would_status === 409) {
    // The real call would be refused whole: say so instead of offering it.
    resultBox.replaceChildren(h("p", { class: "panel error dry-run", role: "alert" },
      `Dry run: ${number(dry.matched)} session(s) are ${state} now, more than the cap of ${number(dry.cap)}: `,
      "the unlock would be refused whole (409) and nothing would change. Unlock them by selection, or raise admin.bulk_unlock_cap."));
    return;
  }
  const values = await ask(`Unlock every ${state} session of ${pool}`, [
    h("p", { class: "dry-run" }, `Dry run: ${number(dry.matched)} session(s) are ${state} now; all of them would be unlocked.`),
    reasonField(),
  ], `Unlock ${number(dry.would_change)}`);
  if (!values) return;
  try {
    const done = await api.bulkUnlock(pool, { state, reason: values.reason });
    const text = `Bulk unlock: ${number(done.changed)} ${state} session(s) unlocked.`;
    toast(text, "ok");
    await reload();
    document.getElementById("result").replaceChildren(h("p", { class: "panel ok", role: "status" }, text));
  } catch (error) {
    resultBox.replaceChildren(errorPanel(error));
    toast(explain(error), "error");
  }
}

function row(pool, session, selected, onToggle) {
  const box = h("input", { type: "checkbox", checked: selected.has(session.id), "aria-label": `Select ${session.id}`,
    onchange: (event) => onToggle(session.id, event.target.checked) });
  const shown = Object.entries(session.fields || {});
  const held = HELD.includes(session.state) && session.next_use;
  return h("tr", { "data-id": session.id },
    h("td", {}, box),
    h("td", { class: "who" }, h("a", { href: link(["pools", pool, "sessions", session.id]), class: "mono" }, session.id.slice(-8)),
      shown.length ? h("div", { class: "fields" }, shown.map(([k, v]) => h("span", { class: "field-value" }, `${k} ${v}`))) : null),
    h("td", {}, stateBadge(session.state), session.set_by ? h("div", { class: "muted small" }, session.set_by) : null),
    h("td", { "data-label": "Hold ends" }, held ? countdown(session.next_use) : "—"),
    h("td", { "data-label": "Last use", title: clock(session.last_use) }, relative(session.last_use)),
    h("td", { class: "num", "data-label": "Uses" }, number(session.count_use)),
    h("td", { class: "num", "data-label": "Successes" }, number(session.count_success)),
    h("td", { class: "num", "data-label": "Ratio" }, percent(session.success_ratio)));
}

export async function sessionsView(pool, query) {
  const page = Math.max(1, Number(query.page) || 1);
  const { pools } = await api.pools();
  const poolInfo = pools.find((p) => p.name === pool);
  if (!poolInfo) {
    render(h("p", { class: "panel error", role: "alert" }, `Unknown pool ${pool}.`), h("a", { href: "#/pools" }, "Back to the pools"));
    return;
  }
  if (!query.state && !query.q && !query.underperforming) query = { ...query, state: "locked" };
  const selected = new Set();
  const resultBox = h("div", { id: "result" });
  const listBox = h("div", { id: "list" });
  const actionBar = h("div", { class: "actions", role: "group", "aria-label": "Act on the selected sessions" });
  const header = h("header", { class: "view-head" },
    h("p", { class: "crumbs" }, h("a", { href: "#/pools" }, "Pools"), " / ", pool),
    h("h1", {}, `Sessions of ${pool}`),
    poolInfo.up ? null : h("p", { class: "panel error", role: "alert" }, "Pool down: ", poolInfo.last_error || "no successful refresh yet"));

  const updateBar = () => {
    const n = selected.size;
    const buttons = [["unlock", "Unlock"], ["deactivate", "Deactivate"], ["activate", "Activate"]].map(([action, label]) =>
      h("button", { type: "button", disabled: n === 0, "data-action": action, onclick: async () => {
        const outcome = await runActions(pool, [...selected], action);
        if (!outcome) return;
        selected.clear();
        await load();
        resultBox.replaceChildren(report(outcome, label));
      } }, query.underperforming && action === "deactivate" ? "Deactivate selected" : label));
    const bulk = ["locked", "blocked"].includes(query.state) && !query.q
      ? h("button", { type: "button", class: "secondary", "data-action": "bulk-unlock",
        onclick: () => bulkUnlock(pool, query.state, resultBox, load) }, `Unlock all ${query.state}…`)
      : null;
    fill(actionBar, h("span", { class: "muted", "aria-live": "polite" }, `${n} selected`), buttons, bulk);
  };

  const load = async () => {
    const params = { state: query.state, q: query.q, order: query.order, page, page_size: PAGE_SIZE };
    if (query.underperforming) {
      delete params.state; delete params.q; delete params.order; params.underperforming = "1";
    }
    let data;
    try {
      data = await api.sessions(pool, params);
    } catch (error) {
      if (error.status === 401) throw error;
      listBox.replaceChildren(errorPanel(error, load));
      return;
    }
    const toggle = (id, on) => { if (on) selected.add(id); else selected.delete(id); updateBar(); };
    const all = h("input", { type: "checkbox", "aria-label": "Select every session on this page",
      onchange: (event) => {
        for (const s of data.sessions) toggle(s.id, event.target.checked);
        for (const b of listBox.querySelectorAll("tbody input[type=checkbox]")) b.checked = event.target.checked;
      } });
    const pages = Math.max(1, Math.ceil(data.total / data.page_size));
    const what = query.underperforming
      ? `underperforming (success ratio under ${percent(data.threshold)}, at least ${poolInfo.underperformers ? poolInfo.underperformers.min_uses : "the minimum"} uses)`
      : `${query.state ? STATE_LABEL[query.state].toLowerCase() : "any state"}${query.q ? ` matching “${query.q}”` : ""}`;
    // A read token matches masked fields whole (a prefix search would let it rebuild them).
    const exact = data.match === "exact"
      ? h("p", { class: "muted small", id: "exact-note" }, `Your token matches ${data.exact_fields.join(", ")} whole: type the full value.`)
      : null;
    const empty = h("p", { class: "empty" }, query.q ? `No session of ${pool} ${exact ? "has" : "starts with"} “${query.q}”${query.state ? ` in state ${query.state}` : ""}.`
      : query.underperforming ? "No session underperforms its pool." : `No session of ${pool} is ${STATE_LABEL[query.state].toLowerCase()} now.`);
    const table = h("div", { class: "table-wrap" }, h("table", { class: "sessions" },
      h("caption", {}, `${number(data.total)} session(s) ${what}`,
        data.total_as_of ? h("span", { class: "muted small" }, ` · counted ${relative(data.total_as_of)}`) : null),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, all), ...["Session", "State", "Hold ends", "Last use", "Uses", "Successes", "Ratio"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, data.sessions.map((s) => row(pool, s, selected, toggle)))));
    const pager = h("nav", { class: "pager", "aria-label": "Pages" },
      h("a", { href: link(["pools", pool], { ...query, page: page - 1 }), "aria-disabled": page <= 1 ? "true" : null,
        class: page <= 1 ? "disabled" : null, rel: "prev" }, "← Previous"),
      h("span", {}, `Page ${page} of ${number(pages)}`),
      h("a", { href: link(["pools", pool], { ...query, page: page + 1 }), "aria-disabled": page >= pages ? "true" : null,
        class: page >= pages ? "disabled" : null, rel: "next" }, "Next →"));
    fill(listBox, exact, data.sessions.length ? table : empty, data.total > data.page_size ? pager : null);
    updateBar();
  };

  render(header, tabs(pool, query, poolInfo.statistics), toolbar(pool, query, poolInfo), actionBar, resultBox, listBox);
  updateBar();
  await load();
}
