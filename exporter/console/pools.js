// The pools overview: per pool the five state counts, the active share against its minimum, the
// next unlock, refresh health and the last hour of states (from the daemon's memory).
import { api } from "./api.js";
import { STATES, STATE_LABEL, clock, h, number, percent, relative, serverNow, svg } from "./dom.js";
import { current, link, onLeave, render } from "./app.js";

const EVERY_MS = 5000;

function chart(timeline) {
  const width = 320;
  const height = 90;
  const points = timeline.points;
  const title = `${timeline.pool}: sessions per state over the last hour`;
  if (points.length < 2) {
    return h("p", { class: "muted chart-empty" }, "The chart fills in as refreshes come in (one point every 5 s).");
  }
  const t0 = Date.parse(points[0].time);
  const t1 = Date.parse(points[points.length - 1].time);
  const span = Math.max(t1 - t0, 1);
  const totals = points.map((p) => STATES.reduce((sum, s) => sum + (p.states[s] || 0), 0));
  const top = Math.max(...totals, 1);
  const x = (p) => ((Date.parse(p.time) - t0) / span) * width;
  const y = (v) => height - (v / top) * height;
  const layers = [];
  const below = points.map(() => 0);
  for (const state of STATES) {
    const upper = points.map((p, i) => below[i] + (p.states[state] || 0));
    const line = points.map((p, i) => `${x(p).toFixed(1)},${y(upper[i]).toFixed(1)}`);
    const base = points.map((p, i) => `${x(p).toFixed(1)},${y(below[i]).toFixed(1)}`).reverse();
    layers.push(svg("polygon", { points: [...line, ...base].join(" "), class: `area state-${state}` }));
    upper.forEach((v, i) => { below[i] = v; });
  }
  const minimum = timeline.min_active_sessions;
  const guide = minimum > 0 && minimum <= top
    ? svg("line", { x1: 0, x2: width, y1: y(minimum), y2: y(minimum), class: "guide" }) : null;
  const figure = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart",
    preserveAspectRatio: "none" }, svg("title", {}, document.createTextNode(title)), ...layers, guide);
  return h("figure", { class: "chart-box" }, figure,
    h("figcaption", { class: "muted" }, `last ${span < 60000 ? `${Math.round(span / 1000)} s` : `${Math.round(span / 60000)} min`} · stacked: `,
      STATES.map((s) => h("span", { class: `key state-${s}` }, STATE_LABEL[s]))));
}

function card(pool, timeline) {
  const stats = pool.statistics;
  const total = stats ? stats.total : null;
  const active = stats ? stats.states.active : null;
  const share = total ? active / total : null;
  const low = active !== null && active < pool.min_active_sessions;
  // Counts a failed or late refresh left behind are shown dimmed, with their age: never as current.
  const old = Boolean(stats) && (!pool.up || !pool.fresh);
  const age = old ? h("p", { class: "health aged" }, `Counts as of ${relative(pool.last_success)}, not current.`) : null;
  // Several daemons share the pools (shard): another one refreshes this pool; actions here still work.
  const elsewhere = pool.watched === false
    ? h("p", { class: "health elsewhere", role: "status" },
      `Watched by daemon ${pool.watched_by.join(", ")} (shard), not this one: its counts are on that daemon's console and in Prometheus. Actions here still apply.`)
    : null;
  const health = elsewhere ? elsewhere : pool.collection_missing
    ? h("p", { class: "health down", role: "status" }, "Collection missing: ", pool.cause || pool.last_error,
      ". Nothing creates it: check the pool's database and collection.")
    : !pool.up
      ? h("p", { class: "health down", role: "status" }, "Pool down: ", pool.cause || pool.last_error || "no successful refresh yet")
      : !pool.fresh
        ? h("p", { class: "health stale" }, "Statistics stale: last refresh ", relative(pool.last_success))
        : h("p", { class: "health ok" }, "Refresh ok · ", relative(pool.last_success), ` · every ${pool.interval} s`);
  const unlock = !stats ? "—" : !stats.next_unlock ? "none held"
    : Date.parse(stats.next_unlock) <= serverNow() ? `due since ${clock(stats.next_unlock)}`
      : `${relative(stats.next_unlock)} (${clock(stats.next_unlock)})`;
  const counts = h("ul", { class: old ? "counts aged" : "counts" }, STATES.map((state) => h("li", {},
    h("a", { href: link(["pools", pool.name], { state }), class: `count state-${state}` },
      h("span", { class: "label" }, STATE_LABEL[state]),
      h("span", { class: "value", "data-state": state }, stats ? number(stats.states[state]) : "—")))));
  const found = pool.underperformers;
  return h("article", { class: "card pool", "data-pool": pool.name, "aria-labelledby": `pool-${pool.name}` },
    h("header", {},
      h("h2", { id: `pool-${pool.name}` }, h("a", { href: link(["pools", pool.name], { state: "locked" }) }, pool.name)),
      h("span", { class: "muted" }, `${pool.database}.${pool.collection}`)),
    health,
    counts,
    age,
    h("div", { class: `share${low ? " low" : ""}` },
      h("label", { for: `share-${pool.name}` }, `Active ${number(active)} of ${number(total)} (${percent(share)}) · minimum ${pool.min_active_sessions}`),
      h("meter", { id: `share-${pool.name}`, min: "0", max: String(total || 1), low: String(pool.min_active_sessions),
        optimum: String(total || 1), value: String(active || 0) }),
      low ? h("p", { class: "warn" }, "Below the pool's minimum of active sessions.") : null),
    h("dl", { class: "facts" },
      h("dt", {}, "Next unlock"), h("dd", {}, unlock),
      h("dt", {}, "Underperforming"), h("dd", {}, found
        ? h("a", { href: link(["pools", pool.name], { underperforming: "1" }) }, `${number(found.count)} session(s)`)
        : "not counted yet"),
      h("dt", {}, "Success ratio"), h("dd", {}, stats && stats.uses ? percent(stats.successes / stats.uses) : "—"),
      // Reports on sessions already handed to another handler: work longer than next_use_delay.
      h("dt", {}, "Lease overruns"), h("dd", { class: stats && stats.overruns ? "warn" : "" },
        stats && stats.overruns !== null && stats.overruns !== undefined ? number(stats.overruns) : "—")),
    timeline ? chart(timeline) : null);
}

export async function poolsView() {
  const mine = current();
  const draw = async () => {
    const { pools } = await api.pools();
    const timelines = await Promise.all(pools.map((p) => api.states(p.name).catch(() => null)));
    if (mine !== current()) return;
    // The overview redraws every few seconds: keep the keyboard where it was.
    const focused = document.activeElement && document.activeElement.getAttribute("href");
    render(h("h1", {}, "Pools"),
      pools.length ? h("div", { class: "grid" }, pools.map((p, i) => card(p, timelines[i])))
        : h("p", { class: "empty" }, "No pools are configured."));
    if (focused) {
      const again = [...document.querySelectorAll("#main a[href]")].find((a) => a.getAttribute("href") === focused);
      if (again) again.focus();
    }
  };
  await draw();
  const timer = setInterval(() => { draw().catch(() => {}); }, EVERY_MS);
  onLeave(() => clearInterval(timer));
}
