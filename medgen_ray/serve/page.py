"""The web page the app serves at `/`: prompt form, live progress, player, gallery.

Plain HTML + JS against the public API (no build step). Videos are fetched with the bearer
token and shown from blob URLs. Query parameters pre-fill the form (`?prompt=...&steps=4`),
and `autorun=1` submits it on load; the page records what it did in `data-*` attributes on
<body> (state, job, progress, video bytes, gallery size), which the browser test reads.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medgen_ray · generate</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
 label{display:block;margin:.4em 0 .1em;font-size:.9em;color:#555}
 textarea{width:100%;height:4.5em} input,select{width:8em}
 .row{display:flex;gap:1em;flex-wrap:wrap} .bar{height:10px;background:#eee;border-radius:5px;margin:.6em 0}
 .bar div{height:100%;width:0;background:#2a7;border-radius:5px;transition:width .2s}
 #gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:1em}
 #gallery figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:.4em;font-size:.8em}
 video{max-width:100%;background:#000} .err{color:#b00}
</style></head>
<body data-state="idle">
<h1>Generate a medical video</h1>
<form id="f">
 <div id="tokenbox" hidden><label>Bearer token</label><input id="token" type="password" style="width:20em"></div>
 <label>Prompt</label><textarea id="prompt" required></textarea>
 <label>Negative prompt</label><input id="negative_prompt" style="width:100%">
 <div class="row">
  <div><label>Height</label><input id="height" type="number" step="16"></div>
  <div><label>Width</label><input id="width" type="number" step="16"></div>
  <div><label>Frames (4k+1)</label><input id="num_frames" type="number" step="4"></div>
  <div><label>Steps</label><input id="steps" type="number"></div>
  <div><label>Guidance</label><input id="guidance" type="number" step="0.5"></div>
  <div><label>Seed</label><input id="seed" type="number" value="0"></div>
  <div><label>Adapter</label><select id="adapter"></select></div>
 </div>
 <p><button type="submit">Generate</button> <span id="msg"></span></p>
</form>
<div class="bar"><div id="bar"></div></div>
<div id="player"></div>
<h2>Gallery</h2><div id="gallery"></div>
<script>
const AUTH = {{AUTH}};
const $ = id => document.getElementById(id);
const body = document.body;
const params = new URLSearchParams(location.search);
if (AUTH) { $("tokenbox").hidden = false; $("token").value = params.get("token") || localStorage.getItem("medgen_token") || ""; }
function headers(json) {
  const h = json ? {"Content-Type": "application/json"} : {};
  const t = $("token").value; if (t) { h["Authorization"] = "Bearer " + t; localStorage.setItem("medgen_token", t); }
  return h;
}
async function api(path, opts = {}) {
  const r = await fetch(path, {...opts, headers: headers(!!opts.body)});
  if (!r.ok) {
    let detail = r.status + "";
    try { const j = await r.json(); detail = typeof j.detail === "string" ? j.detail
          : j.detail.map(e => e.loc.slice(-1)[0] + ": " + e.msg).join("; "); } catch (e) {}
    throw new Error(detail);
  }
  return r;
}
async function videoEl(id) {
  const blob = await (await api(`/v1/videos/${id}/content`)).blob();
  const v = document.createElement("video");
  v.controls = true; v.loop = true; v.muted = true; v.src = URL.createObjectURL(blob);
  v.addEventListener("loadeddata", () => { body.dataset.playable = "yes"; });
  v.addEventListener("error", () => { body.dataset.playable = "no"; });
  return [v, blob.size];
}
let galleryGen = 0;  // a newer refresh wins: refreshes may overlap (page load + a finished job)
async function gallery() {
  const gen = ++galleryGen;
  const jobs = (await (await api("/v1/videos?limit=12")).json()).data;
  const frag = document.createDocumentFragment();
  let shown = 0;
  for (const j of jobs.filter(j => j.status === "completed")) {
    const fig = document.createElement("figure");
    const [v] = await videoEl(j.id);
    if (gen !== galleryGen) return;
    fig.appendChild(v);
    const cap = document.createElement("figcaption");
    cap.textContent = `${j.request.prompt} · ${j.request.adapter} · seed ${j.request.seed}`;
    fig.appendChild(cap); frag.appendChild(fig); shown++;
  }
  if (gen !== galleryGen) return;
  $("gallery").replaceChildren(frag);
  body.dataset.gallery = shown;
}
async function adapters() {
  const names = (await (await api("/v1/adapters")).json()).adapters;
  $("adapter").innerHTML = names.map(n => `<option>${n}</option>`).join("");
}
async function run(ev) {
  if (ev) ev.preventDefault();
  const req = {prompt: $("prompt").value, adapter: $("adapter").value, seed: +$("seed").value};
  if ($("negative_prompt").value) req.negative_prompt = $("negative_prompt").value;
  for (const k of ["height", "width", "num_frames", "steps", "guidance"]) if ($(k).value) req[k] = +$(k).value;
  $("msg").textContent = ""; $("msg").className = ""; $("player").innerHTML = "";
  body.dataset.state = "submitting";
  try {
    const job = await (await api("/v1/videos", {method: "POST", body: JSON.stringify(req)})).json();
    body.dataset.job = job.id; body.dataset.state = "queued";
    let s = job;
    while (s.status === "queued" || s.status === "in_progress") {
      await new Promise(r => setTimeout(r, 300));
      s = await (await api(`/v1/videos/${job.id}`)).json();
      $("bar").style.width = s.progress + "%";
      body.dataset.progress = s.steps_done + "/" + s.steps_total; body.dataset.state = s.status;
      $("msg").textContent = `${s.status}: step ${s.steps_done} of ${s.steps_total}`;
    }
    if (s.status !== "completed") throw new Error((s.error && s.error.message) || s.status);
    const [v, size] = await videoEl(job.id);
    $("player").appendChild(v); body.dataset.videoBytes = size;
    await gallery();
    body.dataset.state = "done"; $("msg").textContent = "done";
  } catch (e) {
    body.dataset.state = "error"; body.dataset.error = e.message;
    $("msg").textContent = e.message; $("msg").className = "err";
  }
}
$("f").addEventListener("submit", run);
(async () => {
  try { await adapters(); await gallery(); } catch (e) { $("msg").textContent = e.message; $("msg").className = "err"; }
  for (const [k, v] of params) if ($(k) && k !== "token") $(k).value = v;
  body.dataset.ready = "yes";
  if (params.get("autorun") === "1") run();
})();
</script></body></html>
"""
