// The Tally dashboard: plain JavaScript, no build step, no library, nothing from elsewhere.
// It polls the paged listing (GET /v1/sessions, following next_cursor) and, for the session
// that is open, its document, variables and history (and, when it is sliced, each slice's
// result). Polling stops while the tab is hidden.
"use strict";

(() => {
  const POLL_MS = 2000;
  const PAGE_LIMIT = 500;           // sessions per listing request
  const MAX_SHOWN = 5000;           // past this, the page asks for a narrower prefix
  const MAX_SERIES = 8;             // lines drawn for a tensor or collection result
  const MAX_SLICE_ROWS = 200;       // slices shown at once (a session may have 1000)
  const TOKEN_KEY = "tally.token";  // sessionStorage: gone when the tab closes
  const SVG = "http://www.w3.org/2000/svg";

  const state = {
    sessions: new Map(),   // name -> {name, metric, epoch, result, key, changedAt}
    listed: false,         // whether a listing has been seen since the page (or prefix) opened
    openedAt: Date.now(),
    selected: null,        // the name in the location hash (#/s/<name>)
    detail: null,          // {name, doc, variables, history, slices}
    collapsed: new Set(),  // group paths folded by the person
    rendered: null,        // the listing the tree shows (names, epochs, results)
    timer: null,
    inFlight: false,
    again: false,
    polls: 0,
  };

  const $ = (id) => document.getElementById(id);

  // ---- small DOM helpers (text only: data never goes through innerHTML) -------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG, tag);
    setAttributes(node, attrs);
    node.append(...children);
    return node;
  }

  function setAttributes(node, attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== null && value !== undefined && value !== false) {
        node.setAttribute(name, String(value));
      }
    }
  }

  // ---- formatting ---------------------------------------------------------------------------

  /** A number with `digits` significant digits (float32 results carry about 7). */
  function formatNumber(value, digits = 6) {
    if (value === null || value === undefined) return "—";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 1e-4 || abs >= 1e9)) return value.toExponential(digits - 3);
    return String(Number(value.toPrecision(digits)));
  }

  function formatAgo(time) {
    const seconds = Math.max(0, Math.round((Date.now() - time) / 1000));
    if (seconds < 2) return "just now";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  const clock = (time) => new Date(time).toLocaleTimeString([], { hour12: false });
  const dateTime = (time) => new Date(time).toLocaleString([], { hour12: false });

  function flatten(value) {
    return Array.isArray(value) ? value.flatMap(flatten) : [value];
  }

  function shapeOf(value) {
    const shape = [];
    for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
    return shape;
  }

  // ---- the API ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  /** GET a /v1 path; a non-2xx answer throws its problem+json `detail`. With `withText`, the
   *  answer is {body, text}: the text keeps the order of an object's keys (see `sliceOrder`). */
  async function api(path, withText = false) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, { headers, cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, `cannot reach the Tally service (${error.message})`);
    }
    const text = await response.text().catch(() => "");
    const body = parseJson(text);
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      throw new ApiError(response.status, `${response.status}: ${detail}`);
    }
    return withText ? { body, text } : body;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  /** The slice values of a /slices answer in the order the server sent them (of arrival).
   *  JSON.parse puts integer-like keys ("10", "2") first, in numeric order, and a slice value
   *  may be an integer: so take the keys of the `slices` object (depth 2) from the text. */
  function sliceOrder(text, slices) {
    const keys = [];
    let depth = 0;
    for (const [token] of text.matchAll(/"(?:[^"\\]|\\.)*"(?:\s*:)?|[{}[\]]/g)) {
      if (token === "{" || token === "[") depth += 1;
      else if (token === "}" || token === "]") depth -= 1;
      else if (depth === 2 && token.endsWith(":")) keys.push(JSON.parse(token.slice(0, -1)));
    }
    const known = Object.keys(slices);
    const ordered = keys.length === known.length && keys.every((k) => Object.hasOwn(slices, k));
    return ordered ? keys : known;
  }

  const sessionPath = (name, tail = "") => `/v1/sessions/${encodeURIComponent(name)}${tail}`;

  /** Every session under the prefix, page by page (at most MAX_SHOWN). */
  async function listSessions(prefix) {
    const sessions = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ prefix, limit: String(PAGE_LIMIT) });
      if (cursor) query.set("cursor", cursor);
      const page = await api(`/v1/sessions?${query}`);
      sessions.push(...page.sessions);
      cursor = page.next_cursor;
    } while (cursor && sessions.length < MAX_SHOWN);
    return { sessions, truncated: Boolean(cursor) };
  }

  // ---- the listing: what changed, and when the page saw it ---------------------------------

  /** Keep the listing; a session whose epoch or result differs from the last poll gets
   *  `changedAt` = now. One first seen in the page's first listing gets null ("before the
   *  page opened"); one that appears later was created since the last poll. */
  function absorb(listed) {
    const now = Date.now();
    const next = new Map();
    for (const s of listed) {
      const key = JSON.stringify([s.epoch, s.result]);
      const before = state.sessions.get(s.name);
      let changedAt = state.listed ? now : null;
      if (before) changedAt = before.key === key ? before.changedAt : now;
      next.set(s.name, { ...s, key, changedAt, flash: Boolean(before) && before.key !== key });
    }
    state.sessions = next;
    state.listed = true;
  }

  /** Sessions as a tree of their dotted names: run42.val.auc is leaf "auc" of group run42.val. */
  function buildTree(sessions) {
    const root = { path: "", label: "", groups: new Map(), leaves: [] };
    for (const s of sessions) {
      const parts = s.name.split(".");
      let node = root;
      for (const part of parts.slice(0, -1)) {
        if (!node.groups.has(part)) {
          const path = node.path ? `${node.path}.${part}` : part;
          node.groups.set(part, { path, label: part, groups: new Map(), leaves: [] });
        }
        node = node.groups.get(part);
      }
      node.leaves.push({ label: parts[parts.length - 1] || s.name, session: s });
    }
    return root;
  }

  function countLeaves(node) {
    let count = node.leaves.length;
    for (const group of node.groups.values()) count += countLeaves(group);
    return count;
  }

  /** Rebuild the tree when a session came, went or changed; else only refresh the "seen
   *  changing" times in place (no churn under the mouse or the text selection). */
  function renderTree() {
    const sorted = [...state.sessions.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    const signature = JSON.stringify(sorted.map((s) => [s.name, s.key]));
    if (signature === state.rendered) {
      for (const row of document.querySelectorAll(".row.session")) {
        const s = state.sessions.get(row.dataset.session);
        if (s) row.querySelector(".seen").replaceChildren(seenLabel(s));
      }
      return;
    }
    state.rendered = signature;
    $("tree").replaceChildren(...renderNode(buildTree(sorted), 0));
    $("empty").hidden = sorted.length > 0;
  }

  function renderNode(node, depth) {
    const out = node.leaves.map((leaf) => renderRow(leaf, depth));
    for (const group of node.groups.values()) out.push(renderGroup(group, depth));
    return out;
  }

  function renderGroup(group, depth) {
    const details = el("details", { class: "group", "data-group": group.path });
    details.open = !state.collapsed.has(group.path);
    details.addEventListener("toggle", () => {
      if (details.open) state.collapsed.delete(group.path);
      else state.collapsed.add(group.path);
    });
    const summary = el("summary", { class: "row group-row" },
      indented(el("span", { class: "group-name" }, group.label), depth),
      el("span", { class: "count" }, `${countLeaves(group)} sessions`));
    details.append(summary, ...renderNode(group, depth + 1));
    return details;
  }

  function indented(node, depth) {
    node.classList.add(`depth-${Math.min(depth, 8)}`);
    return node;
  }

  function renderRow(leaf, depth) {
    const s = leaf.session;
    const row = el("a", {
      class: `row session${s.name === state.selected ? " selected" : ""}`,
      href: `#/s/${encodeURIComponent(s.name)}`, "data-session": s.name,
    },
    indented(el("span", { class: "leaf", title: s.name }, leaf.label), depth),
    el("span", { class: "metric" }, metricLabel(s)),
    el("span", { class: "num epoch" }, String(s.epoch)),
    el("span", { class: `num result${s.flash ? " flash" : ""}` }, compactResult(s.result)),
    el("span", { class: "seen" }, seenLabel(s)));
    return row;
  }

  function seenLabel(s) {
    if (s.changedAt === null) {
      return el("span", { title: "unchanged since the page opened" },
        `before ${clock(state.openedAt)}`);
    }
    return el("span", { title: new Date(s.changedAt).toString() }, formatAgo(s.changedAt));
  }

  function metricLabel(s) {
    if (s.metric) return s.metric;
    return Array.isArray(s.metrics) ? s.metrics.join(" + ") : "";
  }

  /** A result in one table cell: a number; a tensor as a bar sparkline with its first values;
   *  a collection's members as "name value" pairs. */
  function compactResult(result) {
    if (Array.isArray(result)) {
      const values = flatten(result);
      const head = values.slice(0, 2).map((v) => formatNumber(v, 3)).join(", ");
      const more = values.length > 2 ? ", …" : "";
      return el("span", { class: "tensor", title: `shape [${shapeOf(result)}]` },
        sparkline(values), `[${head}${more}]`);
    }
    if (result && typeof result === "object") {
      const parts = Object.entries(result).map(([member, value]) =>
        `${member} ${Array.isArray(value) ? `[${flatten(value).length}]` : formatNumber(value)}`);
      return el("span", { class: "members" }, parts.join(" · "));
    }
    return el("span", { "data-value": result === null ? "" : String(result) },
      formatNumber(result));
  }

  function sparkline(values) {
    const shown = values.slice(0, 24).map((v) => (typeof v === "number" ? v : 0));
    const low = Math.min(0, ...shown);
    const high = Math.max(0, ...shown);
    const span = high - low || 1;
    const bars = shown.map((v, i) => svg("rect", {
      x: i * 5, width: 4,
      y: 14 * (1 - (Math.max(v, 0) - low) / span),
      height: Math.max(0.5, (14 * Math.abs(v)) / span),
    }));
    return svg("svg", { class: "spark", viewBox: `0 0 ${shown.length * 5} 14`,
      width: shown.length * 5, height: 14, "aria-hidden": "true" }, ...bars);
  }

  // ---- the session view ---------------------------------------------------------------------

  async function loadDetail(name) {
    const doc = await api(sessionPath(name));
    const variables = await api(sessionPath(name, "/variables"));
    const previous = state.detail && state.detail.name === name ? state.detail : null;
    const history = previous && previous.doc.epoch === doc.epoch
      ? previous.history
      : await api(sessionPath(name, "/history"));
    let slices = null;  // {results: value -> result, order: [value, ...]} of a sliced session
    if (doc.slices) {
      const { body, text } = await api(sessionPath(name, "/slices"), true);
      slices = { results: body.slices, order: sliceOrder(text, body.slices) };
    }
    state.detail = { name, doc, variables, history, slices };
  }

  function renderDetail() {
    const panel = $("detail");
    panel.hidden = state.selected === null;
    if (state.selected === null) return;
    $("detail-name").textContent = state.selected;
    const detail = state.detail && state.detail.name === state.selected ? state.detail : null;
    renderSlices(detail);
    if (!detail) return;
    const { doc, variables, history } = detail;
    renderFacts(doc, history);
    $("chart").replaceChildren(renderChart(history.epochs, doc.epoch, doc.result));
    $("variables").replaceChildren(...variables.variables.map(renderVariable));
    $("config").textContent = JSON.stringify(doc.config, null, 2);
  }

  function renderFacts(doc, history) {
    const epochs = history.epochs;
    const facts = [
      ["metric", metricLabel(doc)],
      ["epoch", `${doc.epoch} (open)`],
      ["result", fullResult(doc.result)],
      ["created", dateTime(doc.created_at)],
      ["last reset", epochs.length ? dateTime(epochs[epochs.length - 1].closed_at) : "never"],
      ["ttl", doc.ttl_seconds ? `${doc.ttl_seconds} s after the last write` : "none"],
    ];
    $("detail-facts").replaceChildren(...facts.flatMap(([term, value]) =>
      [el("dt", {}, term), el("dd", {}, value)]));
  }

  /** A result in full: a number, a table for a vector or a matrix, or members one by one. */
  function fullResult(result) {
    if (Array.isArray(result)) {
      const rows = Array.isArray(result[0]) ? result : [result];
      return el("table", { class: "tensor-table" }, ...rows.map((row) =>
        el("tr", {}, ...flatten(row).map((v) => el("td", { class: "num" }, formatNumber(v))))));
    }
    if (result && typeof result === "object") {
      return el("ul", { class: "member-list" }, ...Object.entries(result).map(([m, v]) =>
        el("li", {}, `${m}: `, fullResult(v))));
    }
    return el("span", { class: "num result" }, formatNumber(result));
  }

  /** A sliced session's slices: value -> result (a column per member of a collection), in the
   *  server's order, at most MAX_SLICE_ROWS of those the filter matches. */
  function renderSlices(detail) {
    const slices = detail ? detail.slices : null;
    $("slices").hidden = !slices;
    if (!slices) return;
    const { doc } = detail;
    const { results, order } = slices;
    const members = doc.metrics ? Object.keys(doc.result || {}) : null;
    $("slices-count").textContent = `(${order.length} of ${doc.slices.max} slices)`;
    $("slices-head").replaceChildren(el("tr", {}, el("th", {}, "slice"),
      ...(members || ["result"]).map((m) => el("th", { class: "num" }, m))));
    const needle = $("slices-filter").value.trim().toLowerCase();
    const matching = needle ? order.filter((v) => v.toLowerCase().includes(needle)) : order;
    $("slices-rows").replaceChildren(...matching.slice(0, MAX_SLICE_ROWS).map((value) => {
      const result = results[value];
      const cells = members ? members.map((m) => (result ? result[m] : null)) : [result];
      return el("tr", {}, el("td", { class: "slice" }, value),
        ...cells.map((v) => el("td", { class: "num" }, compactResult(v))));
    }));
    const note = slicesNote(order.length, matching.length, needle);
    $("slices-note").hidden = !note;
    $("slices-note").textContent = note;
  }

  function slicesNote(total, matching, needle) {
    if (!total) return "No slice yet in this epoch: an update naming a slice adds one.";
    if (!matching) return `No slice value contains “${needle}”.`;
    if (matching > MAX_SLICE_ROWS) {
      return `Showing the first ${MAX_SLICE_ROWS} of ${matching}${needle ? " matching" : ""}`
        + " slices: filter them to see others.";
    }
    return needle ? `${matching} of ${total} slices match.` : "";
  }

  function renderVariable(variable) {
    const values = flatten(variable.value);
    let value = values.map((v) => formatNumber(v)).join(", ");
    if (values.length > 12) {
      const sum = values.reduce((a, b) => a + (typeof b === "number" ? b : 0), 0);
      value = `${values.slice(0, 12).map((v) => formatNumber(v)).join(", ")}, … `
        + `(${values.length} values, sum ${formatNumber(sum)})`;
    }
    return el("tr", {},
      el("td", {}, el("code", {}, variable.name)),
      el("td", {}, `[${variable.shape.join(", ")}]`),
      el("td", {}, variable.dtype),
      el("td", { class: "value" }, value));
  }

  // ---- the chart: own SVG, one line per scalar series --------------------------------------

  /** Lines to draw: a scalar result is one; a tensor gives one per element and a collection
   *  one per member (up to MAX_SERIES). Each series maps an epoch's result to a number. */
  function seriesOf(results) {
    const sample = results.find((r) => r !== null && r !== undefined);
    if (Array.isArray(sample)) {
      const size = Math.min(flatten(sample).length, MAX_SERIES);
      return [...Array(size).keys()].map((i) => ({
        label: `[${i}]`, pick: (r) => (Array.isArray(r) ? flatten(r)[i] : null),
      }));
    }
    if (sample && typeof sample === "object") {
      return Object.keys(sample).filter((m) => typeof sample[m] === "number")
        .slice(0, MAX_SERIES)
        .map((m) => ({ label: m, pick: (r) => (r ? r[m] : null) }));
    }
    return [{ label: "result", pick: (r) => r }];
  }

  function niceTicks(low, high, count = 4) {
    if (low === high) {
      const pad = Math.abs(low) * 0.1 || 1;
      return niceTicks(low - pad, high + pad, count);
    }
    const raw = (high - low) / count;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
    const ticks = [];
    for (let t = Math.floor(low / step) * step; t <= high + step * 1e-9; t += step) {
      ticks.push(Number(t.toPrecision(12)));
    }
    if (ticks[ticks.length - 1] < high) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }

  function renderChart(closed, openEpoch, openResult) {
    const W = 560, H = 236, L = 56, R = 16, T = 12, B = 44;
    const points = closed.map((e) => ({ epoch: e.epoch, result: e.result, closedAt: e.closed_at }));
    const all = [...points, { epoch: openEpoch, result: openResult, open: true }];
    const series = seriesOf(all.map((p) => p.result));
    const numbers = all.flatMap((p) => series.map((s) => s.pick(p.result)))
      .filter((v) => typeof v === "number");
    const box = el("div");
    if (!closed.length) {
      box.append(el("p", { class: "note" },
        "No closed epoch yet: each reset closes the epoch and adds its result here."));
    }
    if (!numbers.length) return box;
    const yTicks = niceTicks(Math.min(...numbers), Math.max(...numbers));
    const [yLow, yHigh] = [yTicks[0], yTicks[yTicks.length - 1]];
    const firstEpoch = all[0].epoch;
    const xSpan = Math.max(1, openEpoch - firstEpoch);
    const x = (epoch) => L + ((epoch - firstEpoch) / xSpan) * (W - L - R);
    const y = (v) => T + (1 - (v - yLow) / (yHigh - yLow)) * (H - T - B);

    const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": `result per epoch, ${closed.length} closed` });
    for (const tick of yTicks) {
      chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(tick), y2: y(tick) }),
        svg("text", { class: "tick", x: L - 6, y: y(tick) + 4, "text-anchor": "end" },
          formatNumber(tick)));
    }
    for (const epoch of epochTicks(firstEpoch, openEpoch)) {
      chart.append(svg("text", { class: "tick", x: x(epoch), y: H - B + 18,
        "text-anchor": "middle" }, String(epoch)));
    }
    chart.append(svg("text", { class: "axis-label", x: (L + W - R) / 2, y: H - 6,
      "text-anchor": "middle" }, "epoch"));
    series.forEach((s, index) => drawSeries(chart, s, index, points, all, x, y));
    box.append(chart);
    if (series.length > 1) box.append(legend(series));
    return box;
  }

  function epochTicks(first, last) {
    const step = Math.max(1, Math.ceil((last - first) / 8));
    const ticks = [];
    for (let e = first; e <= last; e += step) ticks.push(e);
    if (ticks[ticks.length - 1] !== last) ticks.push(last);
    return ticks;
  }

  function drawSeries(chart, s, index, closed, all, x, y) {
    const tone = `tone-${index % MAX_SERIES}`;
    const located = (p) => ({ ...p, value: s.pick(p.result) });
    const valid = (p) => typeof p.value === "number";
    const solid = closed.map(located).filter(valid);
    const open = located(all[all.length - 1]);
    if (solid.length > 1) {
      chart.append(svg("polyline", { class: `line ${tone}`,
        points: solid.map((p) => `${x(p.epoch)},${y(p.value)}`).join(" ") }));
    }
    if (solid.length && valid(open)) {
      const last = solid[solid.length - 1];
      chart.append(svg("line", { class: `line open-line ${tone}`, x1: x(last.epoch),
        y1: y(last.value), x2: x(open.epoch), y2: y(open.value) }));
    }
    for (const p of solid) {
      chart.append(svg("circle", { class: `point closed ${tone}`, cx: x(p.epoch), cy: y(p.value),
        r: 3.5, "data-epoch": p.epoch },
      svg("title", {}, `${s.label} · epoch ${p.epoch}: ${formatNumber(p.value)}`
        + ` (closed ${dateTime(p.closedAt)})`)));
    }
    if (valid(open)) {
      chart.append(svg("circle", { class: `point open ${tone}`, cx: x(open.epoch),
        cy: y(open.value), r: 4 },
      svg("title", {}, `${s.label} · epoch ${open.epoch} (open, so far): `
        + formatNumber(open.value))));
    }
  }

  function legend(series) {
    return el("ul", { class: "legend" }, ...series.map((s, i) =>
      el("li", {}, el("span", { class: `swatch tone-${i % MAX_SERIES}` }), s.label)));
  }

  // ---- status, errors, polling ---------------------------------------------------------------

  function setStatus(kind, text) {
    const status = $("status");
    status.dataset.state = kind;
    status.textContent = text;
  }

  function showError(error) {
    const box = $("error");
    box.hidden = !error;
    if (!error) return;
    const hint = error.status === 401 || error.status === 403
      ? " Paste a token with the read scope above." : "";
    box.textContent = error.message + hint;
  }

  async function refresh() {
    state.polls += 1;
    try {
      const prefix = $("prefix").value.trim();
      const { sessions, truncated } = await listSessions(prefix);
      absorb(sessions);
      showError(null);
      const note = $("truncated");
      note.hidden = !truncated;
      note.textContent = truncated
        ? `Showing the first ${sessions.length} sessions: narrow them with a prefix.` : "";
      renderTree();
      setStatus("live", `live · ${sessions.length} sessions · ${clock(Date.now())}`);
    } catch (error) {
      showError(error);
      setStatus("error", `error · ${clock(Date.now())}`);
    }
    await refreshDetail();
  }

  async function refreshDetail() {
    const name = state.selected;
    if (name === null) return renderDetail();
    try {
      await loadDetail(name);
      $("detail-error").hidden = true;
    } catch (error) {
      if (state.selected !== name) return undefined;
      state.detail = null;
      $("detail-error").hidden = false;
      $("detail-error").textContent = error.message;
    }
    return renderDetail();
  }

  /** One poll, then the next in POLL_MS; a call during a poll runs one more right after it. */
  async function tick() {
    clearTimeout(state.timer);
    state.timer = null;
    if (state.inFlight) {
      state.again = true;
      return;
    }
    if (document.hidden) {
      setStatus("paused", "paused while the tab is hidden");
      return;
    }
    state.inFlight = true;
    try {
      await refresh();
    } finally {
      state.inFlight = false;
    }
    if (state.again) {
      state.again = false;
      tick();
    } else if (document.hidden) {
      setStatus("paused", "paused while the tab is hidden");
    } else {
      state.timer = setTimeout(tick, POLL_MS);
    }
  }

  function onVisibilityChange() {
    if (document.hidden) {
      clearTimeout(state.timer);
      state.timer = null;
      setStatus("paused", "paused while the tab is hidden");
    } else {
      tick();
    }
  }

  function selectFromHash() {
    const match = /^#\/s\/(.+)$/.exec(location.hash);
    const opening = match !== null && state.selected === null;
    const selected = match ? decodeURIComponent(match[1]) : null;
    if (selected !== state.selected) {
      $("detail-error").hidden = true;
      $("slices-filter").value = "";
    }
    state.selected = selected;
    if (!state.selected) state.detail = null;
    for (const row of document.querySelectorAll(".row.session")) {
      row.classList.toggle("selected", row.dataset.session === state.selected);
    }
    renderDetail();
    if (opening) $("detail").scrollIntoView({ block: "nearest" });  // below the list when narrow
    tick();
  }

  function setUpToken() {
    const input = $("token");
    input.value = sessionStorage.getItem(TOKEN_KEY) || "";
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
      tick();
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      input.value = "";
      tick();
    });
  }

  function setUpPrefix() {
    let debounce = null;
    $("prefix").addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        state.sessions = new Map();
        state.rendered = null;
        state.listed = false;
        state.openedAt = Date.now();
        tick();
      }, 300);
    });
  }

  function start() {
    setUpToken();
    setUpPrefix();
    $("slices-filter").addEventListener("input", () => renderDetail());
    document.addEventListener("visibilitychange", onVisibilityChange);
    window.addEventListener("hashchange", selectFromHash);
    // For tests and curious people: the poll count and a way to poll now.
    window.tallyDashboard = {
      polls: () => state.polls,
      polling: () => state.timer !== null || state.inFlight,
      refresh: tick,
    };
    selectFromHash();
  }

  start();
})();
