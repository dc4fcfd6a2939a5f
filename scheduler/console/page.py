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
<section><h2>Journal</h2><div id="journal"></div></section>
</div>
<div>
<section><h2>Last image <span id="image-name"></span></h2>
<img id="image" alt="no image yet">
<p>level <input id="wc" type="number" step="50" size="6"> width
<input id="ww" type="number" step="50" size="6"> <button id="window-auto" type="button">auto</button></p>
</section>
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
"""

APP_JS = r"""
"use strict";
const csrf = document.querySelector('meta[name=csrf-token]').content;
const $ = (id) => document.getElementById(id);
let view = null, received = 0, lastImage = null;

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
  if (v.last_image && v.last_image !== lastImage) { lastImage = v.last_image; showImage(); }
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
function showImage() {
  if (!lastImage) return;
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
