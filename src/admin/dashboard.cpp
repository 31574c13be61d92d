// SPDX-License-Identifier: Apache-2.0
#include "admin/dashboard.hpp"

namespace ember::admin {

// One page, no external resources: an operator opens it on a node behind a firewall. It polls
// the JSON API every 2 s and keeps what it saw for the sparklines (the last 5 minutes) in the
// browser; the node keeps no history for it beyond its one-minute windows.
std::string_view dashboard_html() noexcept {
  return R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ember node</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
.badge{padding:2px 8px;border-radius:10px;font-size:12px;background:#596275}
.ok{background:#218c52}.bad{background:#c0392b}.warn{background:#c27c0e}
main{padding:14px 18px;display:grid;gap:16px}
section{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 2px #0001}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef2;white-space:nowrap}
th{font-weight:600;font-size:12px;color:#596275}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg{vertical-align:middle}
#auth{display:none}
.muted{color:#8a93a6}
</style></head>
<body>
<header>
  <h1 id="node">Ember node</h1>
  <span id="ready" class="badge">…</span>
  <span id="healthy" class="badge">…</span>
  <span id="meta" class="muted"></span>
  <span id="error" class="badge bad" style="display:none"></span>
</header>
<main>
<section id="auth"><h2>Admin token</h2>
  <p>This node's admin API needs its bearer token.</p>
  <input id="token" type="password" size="40"> <button id="save">Use token</button>
</section>
<section><h2>Services</h2>
<table id="services"><thead><tr><th>service</th><th>state</th><th>role</th><th>epoch</th>
<th>lanes</th><th>queued</th><th>queue (5 min)</th><th>handled/s</th><th>wait p99</th>
<th>wait p99 (5 min)</th><th>run p99</th><th>failures</th><th>calls</th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Masters and epochs</h2>
<table id="masters"><thead><tr><th>group</th><th>master</th><th>node</th><th>epoch</th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Sessions</h2><div id="sessions" class="muted">no gateway on this node</div>
<p><input id="uid" placeholder="player UID" size="24"> <button id="find">Find</button> <span id="found"></span></p>
</section>
<section><h2>Slow handlers</h2>
<table id="slow"><thead><tr><th>service</th><th>method</th><th>slow</th><th>very slow</th><th>slowest</th><th>last trace</th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Cluster</h2>
<table id="nodes"><thead><tr><th>node</th><th>address</th><th>services</th></tr></thead><tbody></tbody></table>
</section>
</main>
<script>
"use strict";
const HISTORY_MS = 5 * 60 * 1000;
const history = new Map();  // service -> [{t, queued, wait, handled}]
let token = sessionStorage.getItem("ember-admin-token") || "";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function ms(seconds) {
  if (seconds === null) return "> 5 s";  // above the histograms' last bound
  if (!seconds) return "0";
  return seconds < 0.001 ? (seconds * 1e6).toFixed(0) + " µs" : (seconds * 1e3).toFixed(1) + " ms";
}
function sparkline(values) {
  const w = 120, h = 22, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  if (values.length > 1) {
    const max = Math.max(...values, 1e-9);
    const pts = values.map((v, i) =>
      (i * w / (values.length - 1)).toFixed(1) + "," + (h - 1 - v / max * (h - 2)).toFixed(1));
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", "#2d6cdf");
    svg.appendChild(line);
  }
  return svg;
}
async function api(path) {
  const headers = token ? {Authorization: "Bearer " + token} : {};
  const r = await fetch(path, {headers, cache: "no-store"});
  if (r.status === 401) {
    document.getElementById("auth").style.display = "block";
    throw new Error("the admin API wants a token");
  }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}
function row(cells) {
  const tr = el("tr");
  for (const c of cells) {
    if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
    else tr.appendChild(el("td", String(c), typeof c === "number" ? "n" : ""));
  }
  return tr;
}
function badge(id, good, yes, no) {
  const b = document.getElementById(id);
  b.textContent = good ? yes : no;
  b.className = "badge " + (good ? "ok" : "bad");
}
async function refresh() {
  const now = Date.now();
  const [node, services, slow, cluster] = await Promise.all(
    [api("/api/node"), api("/api/services"), api("/api/slow"), api("/api/cluster")]);
  document.getElementById("auth").style.display = "none";
  document.getElementById("node").textContent = "Ember node " + node.node;
  badge("ready", node.ready, "ready", "not ready: " + node.not_ready.join("; "));
  badge("healthy", node.healthy, "healthy", "unhealthy");
  document.getElementById("meta").textContent = "version " + node.version + " · up " +
    Math.round(node.uptime_seconds) + " s · log level " + node.log_level;

  const rows = [];
  for (const s of services.services) {
    const key = s.id ? s.name + "#" + s.id : s.name;
    const h = history.get(key) || [];
    const prev = h.length ? h[h.length - 1] : null;
    const rate = prev && s.handled !== undefined ? (s.handled - prev.handled) * 1000 / (now - prev.t) : 0;
    h.push({t: now, queued: s.queued, wait: s.wait_p99_seconds === null ? 5 : (s.wait_p99_seconds || 0), handled: s.handled || 0});
    while (h.length && now - h[0].t > HISTORY_MS) h.shift();
    history.set(key, h);
    const calls = Object.entries(s.calls || {}).map(([k, v]) => k + " " + v).join(", ");
    const role = !s.group ? "—" : (s.master ? "master" : "slave");
    rows.push(row([key + (s.retired ? " (retired)" : ""), s.state, role, s.group ? s.epoch : "—",
      s.lanes, s.queued, sparkline(h.map(x => x.queued)), Math.max(0, Math.round(rate)),
      ms(s.wait_p99_seconds), sparkline(h.map(x => x.wait)), ms(s.run_p99_seconds), s.failures,
      calls || "—"]));
  }
  fill("services", rows);

  const masters = [];
  for (const n of cluster.nodes)
    for (const s of n.services)
      if (s.master && s.epoch > 0)
        masters.push(row([s.id ? s.name + "#" + s.id : s.name, "yes", n.node, s.epoch]));
  fill("masters", masters.length ? masters : [row(["no master/slave group", "", "", ""])]);

  const gw = node.subsystems.gateway;
  document.getElementById("sessions").textContent = gw ?
    gw.sessions + " sessions, " + gw.connections + " connections, " + gw.detached +
    " waiting to resume" + (gw.draining ? " — draining" : "") : "no gateway on this node";

  fill("slow", slow.slow.map(s => row([s.service, s.method, s.slow, s.very_slow,
    ms(s.max_seconds), s.last_trace_id])));
  fill("nodes", cluster.nodes.map(n => row([n.node + (n.node === cluster.self ? " (this node)" : ""),
    n.address || "—", n.services.length])));
}
// One polling loop at a time: a new token starts a new loop, and the old one ends at its next turn.
let loop = 0;
let pending = null;
async function tick(mine) {
  const error = document.getElementById("error");
  try { await refresh(); error.style.display = "none"; }
  catch (e) { error.textContent = e.message; error.style.display = "inline"; }
  if (mine === loop) pending = setTimeout(() => tick(mine), 2000);
}
document.getElementById("save").onclick = () => {
  token = document.getElementById("token").value;
  sessionStorage.setItem("ember-admin-token", token);
  clearTimeout(pending);
  tick(++loop);
};
document.getElementById("find").onclick = async () => {
  const uid = document.getElementById("uid").value;
  const out = document.getElementById("found");
  try {
    const r = await api("/api/sessions?uid=" + encodeURIComponent(uid));
    const f = r.found || {};
    out.textContent = f.online ? "on " + f.gateway + ", session " + f.session : "not logged in";
  } catch (e) { out.textContent = e.message; }
};
tick(loop);
</script>
</body></html>
)html";
}

}  // namespace ember::admin
