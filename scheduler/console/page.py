# ruff: noqa: E501 - the page and its script are HTML/JS text, wrapped as such
"""The console page: plain HTML and JavaScript, no framework and nothing fetched from
elsewhere. The script only reads the event stream and POSTs the buttons (with the CSRF
token the page carries); every decision stays on the server."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="csrf-token" content="{{CSRF}}">
<title>fluoroctl console</title>
<link rel="stylesheet" href="/app.css"></head><body>
<header><b>fluoroctl</b><span id="protocol"></span>
<span>state <b id="state">…</b></span>
<span>next <span id="next-step">—</span> in <span class="big" id="countdown">—</span></span>
<span>since injection <span class="big" id="since-injection">—</span></span>
<span id="link" class="warn">connecting…</span>
<span style="margin-left:auto">
<button id="pause" type="button">Pause</button>
<button id="resume" type="button">Resume</button>
<button id="abort" type="button">Abort exam…</button>
<button id="abort-confirm" type="button" hidden>Confirm: abort now (devices to safe state)</button>
<button id="abort-cancel" type="button" hidden>Keep going</button>
</span></header>
<main>
<div>
<section id="prompt" hidden><h2>Operator prompt — <span id="prompt-step"></span></h2>
<p id="prompt-message"></p>
<label id="deliberate-box" hidden><input id="deliberate" type="checkbox">
I have checked the line, the patient and the program: start the injection</label>
<p><button id="confirm" type="button"></button> <button id="decline" type="button"></button></p>
</section>
<section><h2>Steps</h2>
<table id="steps"><thead><tr><th>step</th><th>status</th><th>planned T+</th>
<th>commanded T+</th><th>device T+</th><th></th></tr></thead><tbody></tbody></table>
<p>reason <input id="reason" value="operator" size="30">
<button id="extra" type="button">Extra film at the current view</button>
<span id="result"></span></p>
</section>
<section><h2>Time points: when each step happened (device-reported) minus its time point</h2>
<svg id="timing" viewBox="0 0 560 150" role="img" aria-label="lateness of each timed film"></svg></section>
<section><h2>Journal</h2><div id="journal"></div></section>
</div>
<div>
<section><h2>Last image <span id="image-name"></span></h2>
<img id="image" alt="no image yet">
<p>level <input id="wc" type="number" step="50" size="6"> width
<input id="ww" type="number" step="50" size="6"> <button id="window-auto" type="button">auto</button></p>
</section>
<section><h2>Contact sheet <span id="sheet-count"></span></h2><div id="sheet"></div></section>
<section id="curves-box" hidden><h2>Contrast in the simulated patient (mg iodine / mL)</h2>
<svg id="curves" viewBox="0 0 560 190" role="img" aria-label="iodine concentration per compartment"></svg></section>
<section><h2>Injector</h2><div id="injector"></div></section>
<section><h2>Dose</h2><div id="dose"></div></section>
<section><h2>Devices</h2><div id="devices"></div></section>
</div></main>
<script src="/app.js"></script>
</body></html>
"""

APP_CSS = """
body{font:14px system-ui,sans-serif;margin:0;background:#111;color:#ddd}
header{display:flex;gap:1.5em;align-items:center;padding:.5em 1em;background:#222}
header b{font-size:1.2em} .big{font-size:1.6em;font-variant-numeric:tabular-nums}
main{display:grid;grid-template-columns:1.3fr 1fr;gap:1em;padding:1em}
section{background:#1b1b1b;border:1px solid #333;border-radius:6px;padding:.6em}
h2{font-size:1em;margin:.1em 0 .5em;color:#9cf}
table{border-collapse:collapse;width:100%} td,th{padding:2px 6px;border-bottom:1px solid #333}
tr.running{background:#243} tr.skipped td{color:#888;text-decoration:line-through}
tr.missed,tr.failed{background:#422}
button{font:inherit;padding:.35em .8em;border-radius:4px;border:1px solid #666;
background:#333;color:#eee;cursor:pointer} button:disabled{opacity:.4;cursor:default}
#abort,#abort-confirm{background:#a11;border-color:#f55;font-weight:bold}
#prompt{border:2px solid #fc3;background:#332} #prompt[hidden]{display:none}
#confirm{background:#274;border-color:#5c8} #decline{background:#633}
img{max-width:100%;background:#000} #journal{height:14em;overflow:auto;font:12px monospace;white-space:pre-wrap}
.warn{color:#fc3} .bad{color:#f66} .ok{color:#6c6}
#sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(88px,1fr));gap:4px}
#sheet img{width:100%;cursor:pointer;border:1px solid #333} #sheet img.shown{border-color:#9cf}
svg{width:100%;height:auto;background:#151515} svg text{font-size:10px} svg text:not([fill]){fill:#aaa}
#curves-box[hidden]{display:none}
"""

APP_JS = r"""
"use strict";
const csrf = document.querySelector('meta[name=csrf-token]').content;
const $ = (id) => document.getElementById(id);
let view = null, received = 0, lastImage = null, shownLatest = null;
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#e66", "#fc3", "#6c6", "#5cf", "#c8f", "#f9a", "#ccc"];

function fmt(t) {
  if (t === null || t === undefined || view === null || view.anchor_s === null) return "";
  const d = t - view.anchor_s, s = Math.abs(d);
  return (d < 0 ? "-" : "") + Math.floor(s / 60) + ":" + (s % 60).toFixed(1).padStart(4, "0");
}
async function post(path, body) {
  $("result").textContent = "";
  try {
    const r = await fetch(path, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body)});
    const j = await r.json().catch(() => ({}));
    $("result").textContent = r.ok ? "done" : ("refused: " + (j.reason || r.status));
    return r.ok;
  } catch (e) { $("result").textContent = "no answer from the console: " + e; return false; }
}
function render() {
  const v = view;
  $("protocol").textContent = v.exam.protocol;
  $("state").textContent = v.exam.state + (v.exam.reason ? " (" + v.exam.reason + ")" : "");
  const now = v.now_s;
  $("since-injection").textContent = v.anchor_s === null ? "—" : fmt(now);
  if (v.next) {
    $("next-step").textContent = v.next.label || v.next.step;
    $("countdown").textContent = Math.max(0, v.next.deadline_s - now).toFixed(0) + " s";
  } else { $("next-step").textContent = "—"; $("countdown").textContent = "—"; }
  const tbody = $("steps").tBodies[0];
  tbody.replaceChildren();
  for (const s of v.steps) {
    const tr = document.createElement("tr");
    tr.className = s.status; tr.dataset.step = s.id;
    for (const text of [s.title || s.id, s.status + (s.detail ? " — " + s.detail : ""),
                        fmt(s.planned_s), fmt(s.commanded_s), fmt(s.device_s)]) {
      const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
    }
    const td = document.createElement("td");
    if (v.controls && (s.status === "pending" || s.status === "running")) {
      td.appendChild(button("Skip", "skip-" + s.id, () =>
        post("/api/request", {action: "skip", step: s.id, reason: $("reason").value})));
    }
    if (v.controls && s.files && s.files.length && s.type !== "inject") {
      td.appendChild(button("Repeat film", "repeat-" + s.id, () =>
        post("/api/request", {action: "repeat", step: s.id, reason: $("reason").value})));
    }
    tr.appendChild(td); tbody.appendChild(tr);
  }
  const p = v.prompt;
  $("prompt").hidden = !p || !v.controls;
  if (p) {
    if ($("prompt").dataset.id !== String(p.id)) {
      $("prompt").dataset.id = String(p.id);
      $("deliberate").checked = false;
    }
    $("prompt-step").textContent = p.step;
    $("prompt-message").textContent = p.message;
    $("confirm").textContent = p.confirm;
    $("decline").textContent = p.decline;
    $("deliberate-box").hidden = !p.deliberate;
    $("confirm").disabled = p.deliberate && !$("deliberate").checked;
  }
  for (const id of ["pause", "resume", "extra"]) $(id).disabled = !v.controls;
  $("abort").hidden = !v.controls || $("abort-confirm").hidden === false;
  if (v.last_image && v.last_image !== shownLatest) {
    shownLatest = v.last_image; lastImage = v.last_image; showImage();
  }
  renderSheet(v);
  plotTiming(v);
  plotCurves(v);
  const inj = v.injector;
  $("injector").textContent = "state " + inj.state + " · flow " + (inj.flow_ml_s ?? 0) +
    " mL/s · pressure " + (inj.pressure_kpa ?? 0) + " kPa · delivered " + (inj.delivered_ml ?? 0) + " mL";
  const d = v.dose;
  $("dose").textContent = "air kerma " + d.air_kerma_mgy.toFixed(2) + " mGy · DAP " +
    d.dap_gy_cm2.toFixed(3) + " Gy·cm² · fluoro " + d.fluoro_s.toFixed(1) + " s" +
    (d.alerts.length ? " · ALERT: " + d.alerts.join("; ") : "");
  $("devices").textContent = Object.entries(v.devices).map(([k, s]) => k + ": " + s).join(" · ");
  $("journal").textContent = v.journal.join("\n");
  $("journal").scrollTop = $("journal").scrollHeight;
}
function button(label, id, onclick) {
  const b = document.createElement("button"); b.type = "button"; b.textContent = label;
  b.id = id; b.addEventListener("click", onclick); return b;
}
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, val] of Object.entries(attrs)) e.setAttribute(k, String(val));
  if (text !== undefined) e.textContent = text;
  return e;
}
function axes(svg, box, xlabel, ylabel, xticks, yticks) {
  const [L, T, W, H] = box;
  svg.appendChild(svgEl("line", {x1: L, y1: T + H, x2: L + W, y2: T + H, stroke: "#666"}));
  svg.appendChild(svgEl("line", {x1: L, y1: T, x2: L, y2: T + H, stroke: "#666"}));
  for (const [x, label] of xticks) svg.appendChild(svgEl("text", {x: x, y: T + H + 12, "text-anchor": "middle"}, label));
  for (const [y, label] of yticks) svg.appendChild(svgEl("text", {x: L - 4, y: y + 3, "text-anchor": "end"}, label));
  svg.appendChild(svgEl("text", {x: L + W, y: T + H + 24, "text-anchor": "end"}, xlabel));
  svg.appendChild(svgEl("text", {x: 2, y: T - 2}, ylabel));
}
function minuteTicks(tmax, x) {
  const step = tmax > 1800 ? 600 : tmax > 600 ? 300 : tmax > 120 ? 60 : 10, out = [];
  for (let t = 0; t <= tmax + 1e-9; t += step) out.push([x(t), step >= 60 ? (t / 60) + " min" : t + " s"]);
  return out;
}
// Each timed step: where its time point was (x, T+) and how far from it the step happened
// as the record counts it (y, ms): the device-reported exposure, the operator's answer.
function plotTiming(v) {
  const svg = $("timing"); svg.replaceChildren();
  const timed = v.anchor_s === null ? [] : v.steps.filter((s) => s.planned_s !== null && s.planned_s !== undefined);
  if (!timed.length) { svg.appendChild(svgEl("text", {x: 60, y: 75}, "no time point yet (they start at the injection)")); return; }
  const L = 52, T = 14, W = 495, H = 104;
  const tmax = Math.max(60, ...timed.map((s) => s.planned_s - v.anchor_s)) * 1.05;
  const late = timed.filter((s) => s.device_s !== null && s.device_s !== undefined).map((s) => 1000 * (s.device_s - s.planned_s));
  const lim = Math.max(50, ...late.map(Math.abs)) * 1.25;
  const x = (t) => L + W * t / tmax, y = (ms) => T + H * (1 - (ms + lim) / (2 * lim));
  axes(svg, [L, T, W, H], "time point, T+ (after the injector-reported start)", "ms late", minuteTicks(tmax, x),
       [[y(lim / 1.25), "+" + Math.round(lim / 1.25)], [y(0), "0"], [y(-lim / 1.25), "-" + Math.round(lim / 1.25)]]);
  svg.appendChild(svgEl("line", {x1: L, y1: y(0), x2: L + W, y2: y(0), stroke: "#444", "stroke-dasharray": "3 3"}));
  for (const s of timed) {
    const px = x(s.planned_s - v.anchor_s);
    svg.appendChild(svgEl("line", {x1: px, y1: T, x2: px, y2: T + H, stroke: "#333"}));
    if (s.device_s === null || s.device_s === undefined) {
      svg.appendChild(svgEl("circle", {cx: px, cy: y(0), r: 4, fill: "none", stroke: "#888", "data-step": s.id, class: "planned"}));
      continue;
    }
    const ms = 1000 * (s.device_s - s.planned_s);
    const dot = svgEl("circle", {cx: px, cy: y(ms), r: 4.5, fill: s.status === "done" ? "#6c6" : "#f66",
                                 "data-step": s.id, "data-late-ms": ms.toFixed(1), class: "actual"});
    dot.appendChild(svgEl("title", {}, (s.title || s.id) + ": time point T+" + fmt(s.planned_s) + ", device T+" + fmt(s.device_s) + " (" + (ms >= 0 ? "+" : "") + ms.toFixed(1) + " ms)"));
    svg.appendChild(dot);
    svg.appendChild(svgEl("text", {x: px + 6, y: y(ms) - 6}, (ms >= 0 ? "+" : "") + ms.toFixed(0)));
  }
}
function plotCurves(v) {
  const c = v.curves || {t_s: []}, box = $("curves-box"), svg = $("curves");
  if (c.t_s.length < 2) { box.hidden = true; return; }
  box.hidden = false; svg.replaceChildren();
  const t0 = v.anchor_s === null ? c.t_s[0] : v.anchor_s;
  const names = Object.keys(c).filter((k) => k !== "t_s");
  const top = Math.max(1, ...names.flatMap((n) => c[n].filter((x) => x !== null))) * 1.1;
  const L = 40, T = 14, W = 400, H = 150;
  const tmin = Math.min(0, c.t_s[0] - t0), tmax = Math.max(60, c.t_s[c.t_s.length - 1] - t0);
  const x = (t) => L + W * (t - tmin) / (tmax - tmin), y = (m) => T + H * (1 - m / top);
  axes(svg, [L, T, W, H], "T+", "mg/mL", minuteTicks(tmax, (t) => x(t)).filter(([px]) => px >= L),
       [[y(0), "0"], [y(top / 2), (top / 2).toFixed(0)], [y(top / 1.1), (top / 1.1).toFixed(0)]]);
  for (const s of v.steps) {
    if (s.device_s === null || s.device_s === undefined || !s.files || !s.files.length) continue;
    const px = x(s.device_s - t0);
    if (px >= L) svg.appendChild(svgEl("line", {x1: px, y1: T, x2: px, y2: T + H, stroke: "#555", "stroke-dasharray": "2 3"}));
  }
  names.forEach((name, i) => {
    const pts = [];
    c.t_s.forEach((t, j) => { if (c[name][j] !== null && c[name][j] !== undefined) pts.push(x(t - t0).toFixed(1) + "," + y(c[name][j]).toFixed(1)); });
    svg.appendChild(svgEl("polyline", {points: pts.join(" "), fill: "none", stroke: COLOURS[i % COLOURS.length], "stroke-width": 1.5, "data-name": name}));
    svg.appendChild(svgEl("text", {x: L + W + 8, y: T + 12 + 14 * i, fill: COLOURS[i % COLOURS.length]}, name.replace("_", " ")));
  });
}
function renderSheet(v) {
  const sheet = $("sheet");
  for (const name of v.images.slice(sheet.childElementCount)) {  // it only grows
    const img = document.createElement("img");
    img.src = "/image/" + name.replace(/\.dcm$/, "") + ".png?size=160";
    img.alt = name; img.title = name; img.dataset.name = name;
    img.addEventListener("click", () => { lastImage = name; showImage(); });
    sheet.appendChild(img);
  }
  $("sheet-count").textContent = "(" + v.images.length + ")";
}
function showImage() {
  if (!lastImage) return;
  for (const t of $("sheet").children) t.classList.toggle("shown", t.dataset.name === lastImage);
  const q = new URLSearchParams();
  if ($("wc").value && $("ww").value) { q.set("center", $("wc").value); q.set("width", $("ww").value); }
  $("image").src = "/image/" + lastImage.replace(/\.dcm$/, "") + ".png?" + q;
  $("image-name").textContent = lastImage;
}
$("wc").addEventListener("change", showImage);
$("ww").addEventListener("change", showImage);
$("window-auto").addEventListener("click", () => { $("wc").value = ""; $("ww").value = ""; showImage(); });
$("deliberate").addEventListener("change", () => view && render());
$("confirm").addEventListener("click", () => {
  const p = view && view.prompt; if (!p) return;
  if (p.deliberate && !$("deliberate").checked) return;
  post("/api/answer", {prompt: p.id, confirmed: true});
});
$("decline").addEventListener("click", () => {
  const p = view && view.prompt; if (p) post("/api/answer", {prompt: p.id, confirmed: false});
});
$("pause").addEventListener("click", () => post("/api/control", {action: "pause"}));
$("resume").addEventListener("click", () => post("/api/control", {action: "resume"}));
$("extra").addEventListener("click", () =>
  post("/api/request", {action: "extra", step: null, reason: $("reason").value}));
$("abort").addEventListener("click", () => {
  $("abort").hidden = true; $("abort-confirm").hidden = false; $("abort-cancel").hidden = false;
});
$("abort-cancel").addEventListener("click", () => {
  $("abort").hidden = false; $("abort-confirm").hidden = true; $("abort-cancel").hidden = true;
});
// a plain POST: it works whether or not the event stream is up
$("abort-confirm").addEventListener("click", async () => {
  await post("/api/control", {action: "abort"});
  $("abort").hidden = false; $("abort-confirm").hidden = true; $("abort-cancel").hidden = true;
});
function connect() {
  const es = new EventSource("/events");
  es.addEventListener("open", () => { $("link").textContent = "live"; $("link").className = "ok"; });
  es.addEventListener("state", (e) => { view = JSON.parse(e.data); received++; render(); });
  es.addEventListener("error", () => { $("link").textContent = "connection lost — retrying"; $("link").className = "bad"; });
}
connect();
"""

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fluoroctl console — log in</title>
<link rel="stylesheet" href="/app.css"></head><body>
<header><b>fluoroctl</b><span>operator console</span></header>
<main><section><h2>Log in</h2>
<p>The room's console password: whoever holds the room's key file prints it with
<code>fluoroctl keys console ROOM</code>. Or open the one-time URL the exam printed.</p>
<form id="login"><input id="password" type="password" autocomplete="current-password" size="30"
 autofocus> <button type="submit">Log in</button> <span id="result" class="bad"></span></form>
</section></main><script src="/login.js"></script></body></html>
"""

LOGIN_JS = r"""
"use strict";
document.getElementById("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = document.getElementById("result");
  out.textContent = "";
  const r = await fetch("/api/login", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({password: document.getElementById("password").value})});
  if (r.ok) { location.href = "/"; return; }
  const j = await r.json().catch(() => ({}));
  out.textContent = j.reason || ("refused (" + r.status + ")");
});
"""
