// One session: its shown fields (masked), state, the hold's end counting down, counters, history.
import { api, explain } from "./api.js";
import { clock, countdown, h, number, percent, relative, stateBadge } from "./dom.js";
import { ask, errorPanel, link, reasonField, render, toast } from "./app.js";

const ACTIONS = [["unlock", "Unlock"], ["deactivate", "Deactivate"], ["activate", "Activate"], ["lock", "Lock…"], ["block", "Block…"]];

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function events(list) {
  if (!list.length) return h("p", { class: "empty" }, "No admin action on this session is recorded.");
  return h("div", { class: "table-wrap" }, h("table", { class: "events" },
    h("caption", {}, "Admin actions on this session, newest first"),
    h("thead", {}, h("tr", {}, ["Time", "Actor", "Action", "Result", "State", "Reason"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, list.map((e) => h("tr", {},
      h("td", {}, clock(e.time)), h("td", {}, e.actor), h("td", {}, e.action, e.bulk ? " (bulk)" : ""),
      h("td", {}, e.result, e.repeats ? ` ×${e.repeats + 1}` : ""),
      h("td", {}, `${e.state_before || "?"} → ${e.state_after || "?"}`), h("td", {}, e.reason || "—"))))));
}

export async function sessionView(pool, id) {
  const resultBox = h("div", { id: "result" });
  const draw = async () => {
    const data = await api.history(pool, id, { page_size: 50 });
    const s = data.session;
    const held = ["in_use", "locked", "blocked"].includes(s.state);
    const shown = Object.entries(s.fields || {});
    const buttons = ACTIONS.map(([action, label]) => h("button", { type: "button", "data-action": action,
      onclick: () => act(action) }, label));
    render(
      h("header", { class: "view-head" },
        h("p", { class: "crumbs" }, h("a", { href: "#/pools" }, "Pools"), " / ",
          h("a", { href: link(["pools", pool], { state: s.state }) }, pool), " / session"),
        h("h1", {}, h("span", { class: "mono" }, s.id), " ", stateBadge(s.state))),
      h("section", { class: "card", "aria-labelledby": "hold-title" },
        h("h2", { id: "hold-title" }, "State"),
        facts([
          ["State", stateBadge(s.state)],
          ["Hold ends", held && s.next_use ? h("span", {}, countdown(s.next_use), ` (${clock(s.next_use)})`) : "not held"],
          ["Set by", s.set_by || "—"],
          ["Active field", String(s.active)],
        ]),
        s.problems.length ? h("ul", { class: "problems" }, s.problems.map((p) => h("li", {}, p))) : null),
      h("section", { class: "card", "aria-labelledby": "fields-title" },
        h("h2", { id: "fields-title" }, "Account"),
        shown.length ? facts(shown.map(([k, v]) => [k, h("span", { class: "mono field-value" }, String(v))]))
          : h("p", { class: "muted" }, "No field of this pool's credentials is configured to be shown."),
        h("p", { class: "muted small" }, "Search fields are masked in part; other credentials are never shown.")),
      h("section", { class: "card", "aria-labelledby": "counters-title" },
        h("h2", { id: "counters-title" }, "Counters"),
        facts([
          ["Uses", number(s.count_use)], ["Successes", number(s.count_success)], ["Success ratio", percent(s.success_ratio)],
          ["Lease overruns", number(s.count_overrun || 0)],
          ["Last use", `${relative(s.last_use)} (${clock(s.last_use)})`], ["Created", clock(s.created)],
        ])),
      h("section", { class: "card", "aria-labelledby": "actions-title" },
        h("h2", { id: "actions-title" }, "Actions"),
        h("div", { class: "actions" }, buttons), resultBox),
      h("section", { "aria-labelledby": "history-title" },
        h("h2", { id: "history-title" }, `History (${number(data.total)})`), events(data.events)),
    );
  };
  const act = async (action) => {
    const fields = [reasonField()];
    if (action === "lock" || action === "block") {
      fields.unshift(h("label", { class: "field" }, "Period in minutes",
        h("input", { type: "number", name: "minutes", min: "1", required: true, value: action === "lock" ? "10" : "480" })));
    }
    const values = await ask(`${action[0].toUpperCase()}${action.slice(1)} this session`, fields);
    if (!values) return;
    const body = { reason: values.reason };
    if (values.minutes) body.period = { minutes: Number(values.minutes) };
    try {
      const result = await api.act(pool, id, action, body);
      const text = `${action}: ${result.result} (${result.state_before} → ${result.state_after})`;
      await draw();
      resultBox.replaceChildren(h("p", { class: "panel ok", role: "status" }, text));
      toast(text, "ok");
    } catch (error) {
      resultBox.replaceChildren(errorPanel(error));
      toast(explain(error), "error");
    }
  };
  await draw();
}
