// autoresearch dashboard: one page, fed by /api/events (server-sent events). No build step.
"use strict";
const params = new URLSearchParams(location.search);
let token = params.get("token") || "";
const q = () => (token ? "?token=" + encodeURIComponent(token) : "");
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const fmt = (v) => (v === null || v === undefined ? "" : Number(v).toFixed(6));
const S = { rows: [], metric: { name: "metric", direction: "minimize" }, tag: "", live: {}, selected: null, plot: null };

function firstLine(s, n) {
  const line = String(s || "").trim().split("\n")[0];
  return line.length > n ? line.slice(0, n - 1) + "…" : line;
}

function summary(rows) {
  const cands = rows.filter((e) => e.proposer !== "baseline" && e.proposer !== "harness");
  const kept = rows.filter((e) => e.status === "keep");
  const runs = rows.filter((e) => e.proposer !== "harness").length;
  const span = rows.length ? Math.max(...rows.map((e) => e.finished)) - Math.min(...rows.map((e) => e.started)) : 0;
  const best = kept.length ? kept[kept.length - 1] : null;
  return {
    experiments: cands.length, kept: cands.filter((e) => e.status === "keep").length,
    perHour: span > 0 ? runs / (span / 3600) : 0,
    cost: rows.reduce((a, e) => a + Number((e.proposal || {}).cost_usd || 0), 0),
    baseline: kept.length ? kept[0].metric : null, best: best ? best.metric : null,
    bestId: best ? best.id : null,
  };
}

function renderKpis() {
  const s = summary(S.rows);
  const rate = s.experiments ? Math.round((100 * s.kept) / s.experiments) + "%" : "—";
  const delta = s.best !== null && s.baseline !== null ? (s.best - s.baseline).toFixed(6) : "";
  const cards = [
    ["experiments", s.experiments], ["kept", s.kept], ["keep rate", rate],
    ["per hour", s.perHour.toFixed(1)], ["cost so far", "$" + s.cost.toFixed(2)],
    ["best " + S.metric.name, s.best === null ? "—" : fmt(s.best)],
    ["vs baseline", delta],
  ];
  $("kpis").innerHTML = cards.map(([k, v]) => `<div class="kpi"><b>${esc(v)}</b><span>${esc(k)}</span></div>`).join("");
}

function renderLive() {
  const L = S.live || {};
  const el = $("live");
  el.className = "badge" + (L.running ? " on" : "");
  el.textContent = L.running ? (L.experiment !== null && L.experiment !== undefined
    ? `running: experiment ${L.experiment}${L.description ? " — " + L.description : ""}` : "running")
    : "no loop running";
  $("stop").disabled = !L.running;
  if (L.verified === false) el.textContent += " (ledger unverified)";
}

function renderTable() {
  $("metric-h").textContent = S.metric.name;
  $("count").textContent = `(${S.rows.length} rows)`;
  const body = S.rows.slice().reverse().map((e) => `<tr data-id="${e.id}" class="${e.id === S.selected ? "sel" : ""}">
    <td>${e.id}</td><td class="s-${esc(e.status)}">${esc(e.status)}</td><td>${fmt(e.metric)}</td>
    <td>${fmt(e.holdout)}</td><td class="reason" title="${esc(e.reason)}">${esc(firstLine(e.reason, 80))}</td>
    <td>${(e.proposal || {}).cost_usd ? "$" + Number(e.proposal.cost_usd).toFixed(4) : ""}</td>
    <td>${esc(e.worker)}</td><td class="desc">${esc(e.description)}</td></tr>`).join("");
  $("table").tBodies[0].innerHTML = body;
}

function chartData() {
  const xs = [], disc = [], kept = [], best = [], hold = [], hi = [], lo = [];
  let b = null, sigma = null;
  for (const e of S.rows) {
    if (e.evidence && e.evidence.sigma) sigma = Number(e.evidence.sigma);
    if (e.metric === null || e.proposer === "harness") continue;
    const k = e.status === "keep";
    if (k) b = e.metric;
    xs.push(e.id); disc.push(k ? null : e.metric); kept.push(k ? e.metric : null);
    best.push(b); hold.push(k && e.holdout !== null ? e.holdout : null);
    hi.push(b !== null && sigma ? b + sigma : null); lo.push(b !== null && sigma ? b - sigma : null);
  }
  // Zoom on the running best (and holdout, band): far-off crashes and bad runs would
  // flatten the progress, as in `autoresearch report`'s plot. Drag to zoom further.
  const near = best.concat(hold, hi, lo).filter((v) => v !== null);
  S.yrange = null;
  if (near.length) {
    const a = Math.min(...near), b2 = Math.max(...near);
    const pad = (b2 - a) * 0.5 || Math.abs(b2) * 0.05 || 1;
    S.yrange = S.metric.direction === "minimize" ? [a - pad, b2 + 3 * pad] : [a - 3 * pad, b2 + pad];
  }
  return [xs, disc, kept, best, hold, hi, lo];
}

function renderChart() {
  const data = chartData();
  const width = Math.max(300, $("chart").clientWidth || 900);
  if (!S.plot) {
    const pts = (color, size) => ({ show: true, size, fill: color, stroke: color });
    S.plot = new uPlot({
      width, height: 300, cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false }, y: { range: (u, mn, mx) => S.yrange || [mn, mx] } },
      axes: [{ label: "experiment" }, { label: S.metric.name + (S.metric.direction === "minimize" ? " (lower is better)" : " (higher is better)"), size: 70 }],
      series: [{ label: "#" },
        { label: "discarded", stroke: "transparent", points: pts("#9e9e9e", 5) },
        { label: "kept", stroke: "transparent", points: pts("#2e7d32", 8) },
        { label: "running best", stroke: "#2e7d32", width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
        { label: "holdout", stroke: "#1565c0", dash: [4, 4], points: pts("#1565c0", 6), spanGaps: true },
        { label: "noise +σ", stroke: "#a5d6a7", points: { show: false } },
        { label: "noise −σ", stroke: "#a5d6a7", points: { show: false } }],
      bands: [{ series: [5, 6], fill: "rgba(46,125,50,0.10)" }],
    }, data, $("chart"));
  } else {
    S.plot.setData(data);
  }
}

function renderLineage() {
  const kept = S.rows.filter((e) => e.status === "keep");
  if (!kept.length) { $("lineage").innerHTML = '<p class="muted">No kept experiment yet.</p>'; return; }
  const tried = {};
  for (const e of S.rows) if (e.status !== "keep" && e.parent) (tried[e.parent] = tried[e.parent] || []).push(e);
  $("lineage").innerHTML = '<ul class="lineage">' + kept.map((k) => {
    const kids = (tried[k.commit] || []).map((d) => `<li data-id="${d.id}">└ #${d.id} <span class="s-${esc(d.status)}">${esc(d.status)}</span> ${esc(firstLine(d.description, 60))} ${fmt(d.metric)}</li>`).join("");
    return `<li class="k" data-id="${k.id}">● #${k.id} <b>${fmt(k.metric)}</b> ${esc(firstLine(k.description, 60))} <span class="muted">${esc((k.commit || "").slice(0, 7))}</span>${kids ? "<ul>" + kids + "</ul>" : ""}</li>`;
  }).join("") + "</ul>";
}

function renderLanes() {
  const rows = S.rows.filter((e) => e.worker && e.started && e.finished);
  if (!rows.length) { $("lanes").innerHTML = '<p class="muted">One experiment at a time (no parallel workers in this tag).</p>'; return; }
  const t0 = Math.min(...rows.map((e) => e.started)), t1 = Math.max(...rows.map((e) => e.finished));
  const span = Math.max(1e-9, t1 - t0);
  const lanes = {};
  for (const e of rows) (lanes[e.worker] = lanes[e.worker] || []).push(e);
  $("lanes").innerHTML = Object.keys(lanes).sort().map((w) => {
    const busy = lanes[w].reduce((a, e) => a + (e.finished - e.started), 0);
    const bars = lanes[w].map((e) => `<div class="bar ${e.status === "keep" ? "keep" : ""}" data-id="${e.id}" title="#${e.id} ${esc(e.status)}" style="left:${(100 * (e.started - t0)) / span}%;width:${Math.max(0.3, (100 * (e.finished - e.started)) / span)}%"></div>`).join("");
    return `<div class="lane"><span class="name">${esc(w)} ${Math.round((100 * busy) / span)}%</span><div class="track">${bars}</div></div>`;
  }).join("");
}

function diffHtml(patch) {
  if (!patch) return '<p class="muted">No change (the baseline, or a re-measure).</p>';
  return '<pre class="diff">' + patch.split("\n").map((l) => {
    const cls = l.startsWith("+++") || l.startsWith("---") || l.startsWith("diff ") ? "meta"
      : l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : l.startsWith("@@") ? "hunk" : "";
    return cls ? `<span class="${cls}">${esc(l)}</span>` : esc(l) + "\n";
  }).join("") + "</pre>";
}

async function select(id) {
  S.selected = id;
  renderTable();
  $("detail-id").textContent = "#" + id;
  const res = await fetch(`/api/experiment/${id}` + q());
  const doc = await res.json();
  if (!res.ok) { $("detail").innerHTML = `<p>${esc(doc.error)}</p>`; return; }
  const e = doc.experiment;
  const metrics = Object.entries(e.metrics || {}).map(([k, v]) => `${esc(k)}=${esc(v)}`).join("  ");
  $("detail").innerHTML = `<p><b>${esc(e.description)}</b><br><span class="s-${esc(e.status)}">${esc(e.status)}</span>
    ${esc(S.metric.name)} ${fmt(e.metric)} ${e.holdout !== null ? "· holdout " + fmt(e.holdout) : ""}
    · commit ${esc((e.commit || "").slice(0, 12))}</p>
    <h3>Reason</h3><pre id="reason">${esc(e.reason)}</pre>
    <h3>Diff</h3><div id="diff">${diffHtml(doc.patch)}</div>
    <h3>Decision evidence</h3><pre>${esc(JSON.stringify(e.evidence, null, 1))}</pre>
    <h3>Metrics</h3><pre>${metrics}</pre>
    <h3>Log tail</h3><pre id="log">${esc(doc.log_tail)}</pre>`;
}

function renderAll() { renderKpis(); renderLive(); renderTable(); renderChart(); renderLineage(); renderLanes(); }

function connect() {
  const es = new EventSource("/api/events" + q());
  es.addEventListener("status", (ev) => {
    const d = JSON.parse(ev.data);
    S.rows = d.experiments; S.metric = d.metric; S.tag = d.tag; S.live = d.live;
    $("title").textContent = "autoresearch/" + d.tag; document.title = "autoresearch/" + d.tag;
    renderAll();
  });
  es.addEventListener("rows", (ev) => {
    const d = JSON.parse(ev.data);
    S.rows = S.rows.slice(0, d.from).concat(d.experiments);
    renderAll();
  });
  es.addEventListener("live", (ev) => { S.live = JSON.parse(ev.data); renderLive(); });
  es.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "badge warn"; };
}

document.addEventListener("click", (ev) => {
  const row = ev.target.closest("[data-id]");
  if (row && !ev.target.closest("#detail")) select(Number(row.dataset.id));
});

$("stop").addEventListener("click", async () => {
  if (!token) token = prompt("The dashboard's token (in the URL it printed):") || "";
  const res = await fetch("/api/stop", { method: "POST", headers: { "X-Autoresearch-Token": token } });
  const doc = await res.json();
  $("stopmsg").textContent = res.ok ? `stop sent to pid ${doc.stopped}: the current experiment ends cleanly` : doc.error;
});

fetch("/api/config").then((r) => r.json()).then((c) => { $("public").hidden = !c.public; });
connect();
