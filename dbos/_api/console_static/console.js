// The dbos console's pages. No build step, no dependencies. Everything shown comes
// from /api/ and goes into the page as text nodes (el() below), never as markup:
// a workflow's inputs and outputs are user data.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const SVG = "http://www.w3.org/2000/svg";
const STATUSES = ["ENQUEUED", "PENDING", "SUCCESS", "ERROR", "CANCELLED", "RETRIES_EXCEEDED"];
const FILTERS = ["status", "name", "queue", "app_version", "executor", "prefix", "start_time", "end_time"];
let timer = null;

// -- small helpers ---------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "onclick" || k === "onchange" || k === "onsubmit") node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(body || {}),
  });
  const out = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(out.error || r.statusText);
  return out;
}

function flash(text, kind) {
  const f = document.getElementById("flash");
  f.hidden = !text;
  f.className = kind || "";
  f.textContent = text || "";
}

function time(ms) { return ms === null || ms === undefined ? "" : new Date(ms).toISOString().replace("T", " ").replace("Z", ""); }
function age(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function badge(state) { return el("span", { class: "badge s-" + String(state).toLowerCase() }, state); }
function wfLink(id) { return el("a", { href: "/workflows/" + encodeURIComponent(id), class: "wf" }, id); }
function table(headers, rows, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "(none)"))]));
}
function td(text, cls) { return el("td", cls ? { class: cls } : {}, text); }
function stamp() { document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString(); }

function every(ms, fn) {
  const tick = async () => {
    try { await fn(); stamp(); } catch (e) { flash(e.message, "error"); }
    timer = setTimeout(tick, ms);
  };
  tick();
}

function confirmDialog(title, body) {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  const b = document.getElementById("confirm-body");
  b.replaceChildren(...[].concat(body));
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
  });
}

// A value as the API sends it ({text, truncated, length}), with "show all" when cut.
function valueBlock(label, value, reload) {
  if (!value) return null;
  const pre = el("pre", { class: "value", "data-value": label }, value.text);
  const more = value.truncated
    ? el("button", { type: "button", class: "link show-all", onclick: reload }, `show all (${value.length} characters)`)
    : null;
  return el("section", { class: "valuebox" }, el("h3", {}, label), pre, more);
}

// -- fleet -----------------------------------------------------------------------------------
async function fleetPage(main) {
  main.replaceChildren(el("h1", {}, "Fleet"), el("div", { id: "leader" }), el("div", { id: "executors" }));
  every(1000, async () => {
    const [rows, lead] = await Promise.all([api("/api/executors"), api("/api/leader")]);
    const l = lead.leader;
    document.getElementById("leader").replaceChildren(el("p", {},
      "Leading coordinator: ", l && l.live ? el("code", {}, l.holder) : el("span", { class: "muted" }, "none"),
      l && l.live ? ` (term ${l.term})` : ""));
    const byVersion = {};
    for (const r of rows) (byVersion[r.app_version] = byVersion[r.app_version] || []).push(r);
    const now = Date.now();
    const sections = Object.keys(byVersion).sort().map((v) => el("section", { class: "version", "data-version": v },
      el("h2", {}, "Version ", el("code", {}, v)),
      table(["Executor", "State", "Host", "PID", "Uptime", "Heartbeat age", "Running"], byVersion[v].map((r) =>
        el("tr", { "data-executor": r.executor_id },
          td(r.executor_id), el("td", { class: "state" }, badge(r.state)), td(r.hostname), td(r.pid),
          td(r.state === "RUNNING" || r.state === "DRAINING" ? age((now - r.started_at) / 1000) : "—"),
          td(age(r.heartbeat_age_s)), td(r.running))))));
    document.getElementById("executors").replaceChildren(...(sections.length ? sections : [el("p", { class: "muted" }, "No executors.")]));
  });
}

// -- versions --------------------------------------------------------------------------------
async function versionsPage(main) {
  main.replaceChildren(el("h1", {}, "Versions"), el("div", { id: "versions" }), el("h2", {}, "Launches (24 h)"), el("div", { id: "launches" }));
  every(2000, async () => {
    const [vs, ls] = await Promise.all([api("/api/versions"), api("/api/launches")]);
    document.getElementById("versions").replaceChildren(table(
      ["Version", "Latest", "Live executors", "Draining", "Running", "Enqueued", "Waiting", "Oldest waiting", "Launches in flight"],
      vs.map((v) => el("tr", { "data-version": v.app_version }, td(v.app_version), td(v.latest ? "latest" : ""),
        td(v.live_executors), td(v.draining_executors), td(v.running), td(v.enqueued), td(v.waiting),
        td(age(v.oldest_waiting_age_s)), td(v.launches_in_flight)))));
    document.getElementById("launches").replaceChildren(table(
      ["Version", "Launcher", "State", "Attempt", "Started", "Finished", "Executor", "Error"],
      ls.map((l) => el("tr", { class: "launch-" + l.state.toLowerCase() }, td(l.app_version), td(l.launcher),
        el("td", {}, badge(l.state)), td(l.attempt), td(time(l.started_at)), td(time(l.finished_at)),
        td(l.executor_id || ""), td(l.error || "")))));
  });
}

// -- queues ----------------------------------------------------------------------------------
function sparkline(points) {
  const w = 180, h = 36, n = points.length || 1, max = Math.max(1, ...points.map((p) => p.started));
  const bw = w / n;
  const bars = points.map((p, i) => {
    const bh = (p.started / max) * (h - 2);
    return svg("rect", { x: i * bw + 0.5, y: h - bh, width: Math.max(1, bw - 1), height: bh, class: "bar" },
      svg("title", {}, `${time(p.minute)}: ${p.started} started`));
  });
  return svg("svg", { width: w, height: h, class: "spark", role: "img", "aria-label": "starts per minute" }, ...bars);
}

async function queuesPage(main) {
  main.replaceChildren(el("h1", {}, "Queues"), el("div", { id: "queues" }));
  every(2000, async () => {
    const qs = await api("/api/queues");
    const limit = (q) => [q.concurrency ? `global ${q.concurrency}` : null, q.worker_concurrency ? `worker ${q.worker_concurrency}` : null,
      q.rate_limit ? `rate ${q.rate_limit}/${q.rate_period_s}s` : null, q.partitioned ? "partitioned" : null].filter(Boolean).join(", ");
    document.getElementById("queues").replaceChildren(table(
      ["Queue", "Enqueued", "Pending", "Limits", "Full", "Oldest waiting", "Live executors", "Started / minute (15 min)"],
      qs.map((q) => el("tr", { "data-queue": q.queue_name }, td(q.queue_name), td(q.enqueued, "enqueued"), td(q.pending, "pending"),
        td(limit(q)), td(q.fullness === null ? "" : Math.round(q.fullness * 100) + "%"), td(age(q.oldest_enqueued_age_s)),
        td(q.live_executors), el("td", {}, sparkline(q.starts_per_minute))))));
  });
}

// -- workflows -------------------------------------------------------------------------------
function currentFilters() {
  const p = new URLSearchParams(location.search);
  const out = {};
  for (const k of [...FILTERS, "limit", "offset", "sort"]) if (p.get(k)) out[k] = p.get(k);
  return out;
}

async function workflowsPage(main) {
  const f = currentFilters();
  const input = (name, label, attrs) => el("label", {}, label, " ",
    el("input", { name, value: f[name] || "", ...(attrs || {}) }));
  const statusSel = el("select", { name: "status" }, el("option", { value: "" }, "any"),
    STATUSES.map((s) => el("option", { value: s, selected: f.status === s }, s)));
  const form = el("form", { id: "filters", onsubmit: (e) => { e.preventDefault(); apply(0); } },
    el("label", {}, "Status ", statusSel), input("name", "Name"), input("queue", "Queue"),
    input("app_version", "Version"), input("executor", "Executor"), input("prefix", "ID prefix"),
    input("start_time", "From", { placeholder: "2026-12-01T00:00:00Z" }), input("end_time", "To", { placeholder: "RFC 3339" }),
    el("label", {}, "Per page ", el("select", { name: "limit" }, [...new Set([10, 20, 50, 100, Number(f.limit || 20)])]
      .sort((a, b) => a - b).map((n) =>
      el("option", { value: n, selected: String(f.limit || 20) === String(n) }, n)))),
    el("label", {}, "Order ", el("select", { name: "sort" }, el("option", { value: "desc", selected: f.sort !== "asc" }, "newest first"),
      el("option", { value: "asc", selected: f.sort === "asc" }, "oldest first"))),
    el("button", { type: "submit", id: "apply" }, "Apply"));
  const auto = el("input", { type: "checkbox", id: "autorefresh", checked: true });
  const bulk = el("div", { class: "bulk" },
    el("button", { type: "button", id: "bulk-cancel", class: "danger", onclick: () => bulkAction("cancel") }, "Cancel all matching"),
    el("button", { type: "button", id: "bulk-resume", onclick: () => bulkAction("resume") }, "Resume all matching"));
  main.replaceChildren(el("h1", {}, "Workflows"), form,
    el("p", {}, el("label", {}, auto, " refresh every 3 s")), bulk, el("div", { id: "list" }),
    el("nav", { class: "pager" }, el("button", { type: "button", id: "prev", onclick: () => page(-1) }, "‹ Previous"),
      el("span", { id: "pageinfo" }), el("button", { type: "button", id: "next", onclick: () => page(1) }, "Next ›")));

  function formFilters() {
    const out = {};
    for (const [k, v] of new FormData(form).entries()) if (v) out[k] = String(v).trim();
    return out;
  }
  function apply(offset) {
    const q = formFilters();
    if (offset) q.offset = String(offset);
    history.replaceState(null, "", "/workflows?" + new URLSearchParams(q));
    load();
  }
  function page(dir) {
    const cur = currentFilters(), limit = Number(cur.limit || 20), off = Number(cur.offset || 0);
    apply(Math.max(0, off + dir * limit));
  }
  async function bulkAction(action) {
    const filters = formFilters();
    delete filters.limit; delete filters.sort;
    const shownFilters = Object.entries(filters).map(([k, v]) => `${k} = ${v}`).join(", ") || "no filter: every workflow";
    const ok = await confirmDialog(`${action === "cancel" ? "Cancel" : "Resume"} every matching workflow?`,
      [el("p", {}, `This will ${action} every workflow (up to 1,000) that matches: `, el("code", {}, shownFilters), "."),
        el("p", {}, action === "cancel" ? "ENQUEUED and PENDING ones become CANCELLED; finished ones are left alone."
          : "CANCELLED, RETRIES_EXCEEDED, ENQUEUED and PENDING ones are re-enqueued on their version.")]);
    if (!ok) return;
    try {
      const r = await post("/api/workflows/bulk", { action, filters });
      flash(`${action}: ${r.changed.length} of ${r.matched} matching workflow(s) changed${r.capped ? " (capped at 1,000)" : ""}`, "ok");
      load();
    } catch (e) { flash(e.message, "error"); }
  }
  async function load() {
    const q = currentFilters();
    if (!q.limit) q.limit = "20";
    const r = await api("/api/workflows?" + new URLSearchParams(q));
    document.getElementById("list").replaceChildren(table(
      ["Workflow ID", "Status", "Name", "Queue", "Executor", "Version", "Created", "Recovery attempts"],
      r.workflows.map((w) => el("tr", { "data-workflow": w.workflow_id }, el("td", {}, wfLink(w.workflow_id)),
        el("td", { class: "status" }, badge(w.status)), td(w.name), td(w.queue_name || ""), td(w.executor_id || ""),
        td(w.app_version || ""), td(time(w.created_at)), td(w.recovery_attempts))), { id: "workflows" }));
    document.getElementById("prev").disabled = r.offset === 0;
    document.getElementById("next").disabled = r.next_offset === null;
    document.getElementById("pageinfo").textContent = r.workflows.length
      ? ` ${r.offset + 1}–${r.offset + r.workflows.length} ` : " none ";
    stamp();
  }
  const tick = async () => {
    if (auto.checked) { try { await load(); } catch (e) { flash(e.message, "error"); } }
    timer = setTimeout(tick, 3000);
  };
  try { await load(); } catch (e) { flash(e.message, "error"); }
  timer = setTimeout(tick, 3000);
}

// -- one workflow ----------------------------------------------------------------------------
function timeline(w, steps) {
  const timed = steps.filter((s) => s.started_at !== null && s.completed_at !== null);
  if (!timed.length) return el("p", { class: "muted" }, "No step timings recorded.");
  const t0 = Math.min(w.started_at || w.created_at, ...timed.map((s) => s.started_at));
  const t1 = Math.max(...timed.map((s) => s.completed_at), t0 + 1);
  const width = 720, label = 180, row = 22, span = t1 - t0;
  const x = (t) => label + ((t - t0) / span) * (width - label - 10);
  const parts = [svg("line", { x1: label, y1: 0, x2: label, y2: timed.length * row, class: "axis" })];
  timed.forEach((s, i) => {
    const y = i * row;
    parts.push(svg("text", { x: 0, y: y + 15, class: "step-label" }, `${s.function_id} ${s.function_name}`));
    parts.push(svg("rect", { x: x(s.started_at), y: y + 4, width: Math.max(2, x(s.completed_at) - x(s.started_at)), height: row - 8,
      class: s.error ? "bar error" : "bar", "data-step": s.function_id },
    svg("title", {}, `step ${s.function_id} ${s.function_name}: ${s.duration_ms} ms, ${s.attempts} attempt(s)${s.error ? " (error)" : ""}`)));
  });
  parts.push(svg("text", { x: width - 10, y: timed.length * row + 14, class: "step-label", "text-anchor": "end" }, `${span} ms`));
  return svg("svg", { width, height: timed.length * row + 20, class: "timeline", id: "timeline", role: "img",
    "aria-label": "step timeline" }, ...parts);
}

async function detailPage(main, id) {
  let full = false;
  async function render() {
    const q = full ? "?full=1" : "";
    const base = "/api/workflows/" + encodeURIComponent(id);
    const [w, steps, ev, versions] = await Promise.all([api(base + q), api(base + "/steps" + q), api(base + "/events" + q),
      api("/api/versions").catch(() => [])]);
    const reload = () => { full = true; render().catch((e) => flash(e.message, "error")); };
    const field = (k, v) => el("tr", {}, el("th", {}, k), el("td", {}, v === null || v === undefined ? "" : v));
    const link = (v) => (v ? wfLink(v) : "");
    const failed = steps.find((s) => s.error);
    const actions = el("div", { class: "actions" },
      el("button", { type: "button", id: "cancel", class: "danger", onclick: () => act("cancel") }, "Cancel"),
      el("button", { type: "button", id: "resume", onclick: () => act("resume") }, "Resume"),
      el("label", {}, " Fork from step ", el("select", { id: "fork-step" },
        [...steps.map((s) => s.function_id), steps.length ? steps[steps.length - 1].function_id + 1 : 1]
          .map((n) => el("option", { value: n, selected: failed ? n === failed.function_id : false }, n)))),
      el("label", {}, " onto version ", el("input", { id: "fork-version", list: "version-list", value: w.app_version || "" }),
        el("datalist", { id: "version-list" }, versions.map((v) => el("option", { value: v.app_version })))),
      el("button", { type: "button", id: "fork" , onclick: () => fork(steps) }, "Fork…"));
    main.replaceChildren(...[
      el("h1", {}, "Workflow ", el("code", { id: "wf-id" }, w.workflow_id), " ", el("span", { id: "wf-status" }, badge(w.status))),
      actions,
      el("table", { class: "fields" }, el("tbody", {},
        field("Name", w.name), field("Queue", w.queue_name), field("Executor", w.executor_id), field("Version", w.app_version),
        field("Created", time(w.created_at)), field("Started", time(w.started_at)), field("Updated", time(w.updated_at)),
        field("Recovery attempts", w.recovery_attempts), field("Parent", link(w.parent_workflow_id)),
        field("Forked from", link(w.forked_from)),
        field("Children", w.children.length ? w.children.map((c) => el("span", {}, wfLink(c.workflow_id), " ", badge(c.status), " ")) : ""),
        w.decode_error ? field("Note", w.decode_error) : null)),
      valueBlock("Input", w.input, reload), valueBlock("Output", w.output, reload), valueBlock("Error", w.error, reload),
      el("h2", {}, "Steps"), timeline(w, steps),
      table(["#", "Step", "Started", "Duration", "Attempts", "Output / error", "Child"], steps.map((s) =>
        el("tr", { "data-step": s.function_id, class: s.error ? "failed" : "" }, td(s.function_id), td(s.function_name),
          td(time(s.started_at)), td(s.duration_ms === null ? "" : s.duration_ms + " ms"), td(s.attempts),
          el("td", {}, s.error ? el("pre", { class: "value error" }, s.error.text) : s.output ? el("pre", { class: "value" }, s.output.text) : "",
            (s.error || s.output || {}).truncated ? el("button", { type: "button", class: "link show-all", onclick: reload }, "show all") : null),
          el("td", {}, link(s.child_workflow_id)))), { id: "steps" }),
      el("h2", {}, "Events"),
      table(["Key", "Value"], ev.events.map((e) => el("tr", {}, td(e.key), el("td", {}, el("pre", { class: "value" }, e.value.text)))), { id: "events" }),
      el("h2", {}, "Messages waiting"),
      table(["Topic", "Value", "Sent"], ev.messages.map((m) => el("tr", {}, td(m.topic || "(none)"),
        el("td", {}, el("pre", { class: "value" }, m.value.text)), td(time(m.sent_at)))))].filter((c) => c));
    stamp();
  }
  async function act(action) {
    const ok = await confirmDialog(`${action === "cancel" ? "Cancel" : "Resume"} workflow ${id}?`,
      el("p", {}, action === "cancel" ? "It becomes CANCELLED and stops at its next step wherever it runs."
        : "It is re-enqueued and continues from its last recorded step on an executor of its version."));
    if (!ok) return;
    try { const r = await post(`/api/workflows/${encodeURIComponent(id)}/${action}`); flash(`${action}: workflow is ${r.status}`, "ok"); }
    catch (e) { flash(e.message, "error"); }
    render().catch((e) => flash(e.message, "error"));
  }
  async function fork(steps) {
    const step = Number(document.getElementById("fork-step").value);
    const version = document.getElementById("fork-version").value.trim();
    const copied = steps.filter((s) => s.function_id < step);
    const ok = await confirmDialog(`Fork workflow ${id} from step ${step}?`, [
      el("p", {}, "A new workflow starts with the same inputs on version ", el("code", { id: "confirm-version" }, version || "(its own)"), "."),
      el("p", {}, copied.length ? `Steps ${copied.map((s) => s.function_id + " " + s.function_name).join(", ")} are copied (not re-run); `
        : "No step is copied; ", `it runs from step ${step} on.`),
      el("p", { class: "muted" }, "The original workflow is left as it is.")]);
    if (!ok) return;
    try {
      const r = await post(`/api/workflows/${encodeURIComponent(id)}/fork`, { start_step: step, app_version: version || null });
      flash("", "");
      const f = document.getElementById("flash");
      f.hidden = false; f.className = "ok";
      f.replaceChildren("Forked: ", el("a", { id: "fork-link", href: "/workflows/" + encodeURIComponent(r.workflow_id) }, r.workflow_id));
    } catch (e) { flash(e.message, "error"); }
  }
  await render();
}

// -- routing ---------------------------------------------------------------------------------
async function route() {
  const main = document.getElementById("main");
  const path = location.pathname.replace(/\/+$/, "") || "/fleet";
  const name = path === "/" ? "fleet" : path.split("/")[1];
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  if (document.querySelector('meta[name="console-auth"]').content === "token") {
    const b = document.getElementById("logout");
    b.hidden = false;
    b.addEventListener("click", async () => { await post("/logout"); location.href = "/login"; });
  }
  try {
    if (name === "fleet") await fleetPage(main);
    else if (name === "versions") await versionsPage(main);
    else if (name === "queues") await queuesPage(main);
    else if (path === "/workflows") await workflowsPage(main);
    else if (path.startsWith("/workflows/")) await detailPage(main, decodeURIComponent(path.slice("/workflows/".length)));
    else main.replaceChildren(el("p", {}, "Unknown page."));
  } catch (e) { flash(e.message, "error"); }
}

route();
