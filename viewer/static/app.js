/* simulacra view: replays a run of generative agents through the JSON API of viewer/API.md.
   Plain ES2020, no framework. Server text is only ever set with textContent. */
"use strict";
(function () {

// ---- Shared state and small helpers ----------------------------------------------------
const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const TICK_MS = 250, SLIDER_DEBOUNCE_MS = 60, LOG_WINDOW = 60, LOG_LIMIT = 500;
const CROWD = 6;            // more agents than this at one sector: compact dots
const HIDDEN_KINDS = ["observation"];

let meta = null, startMs = 0, live = false, following = false;
let lastState = null, selected = null, timer = null, stream = null;
const sectors = new Map();  // sector name -> {name, wx, wy, x, top, w, h, g}
const markers = new Map();  // agent name -> {g, title, hit, act, ...last drawn values}
const homes = new Map();    // agent name -> home place (where an agent with no place yet is drawn)
const view = {w: 1000, h: 640, vb: null};  // SVG size in px and the zoomed viewBox

const V = window.viewer = {
  ready: false, step: null, meta: null,
  go: (step) => goTo(step),
  open: (name) => openAgent(name),
  get following() { return following; },
};

function fill(e, attrs, text) {  // attributes, then text (never HTML)
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) e.setAttribute(k, v);
  if (text != null) e.textContent = String(text);
  return e;
}
const el = (tag, attrs, text) => fill(document.createElement(tag), attrs, text);
const sv = (tag, attrs, text) => fill(document.createElementNS(SVGNS, tag), attrs, text);
// Call fn once calls stop for ms; with maxMs, at least every maxMs while they go on.
function debounce(fn, ms, maxMs) {
  let t = null, since = 0;
  return (...a) => {
    if (t === null) since = Date.now();
    clearTimeout(t);
    t = setTimeout(() => { t = null; fn(...a); }, maxMs && Date.now() - since >= maxMs ? 0 : ms);
  };
}
// Run an async fn one at a time; calls made while it runs coalesce into one more run.
function latest(fn) {
  let running = false, again = false;
  return async function run() {
    if (running) { again = true; return; }
    running = true;
    try { do { again = false; await fn(); } while (again); } finally { running = false; }
  };
}
async function api(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== "") q.set(k, v);
  const qs = q.toString();
  const r = await fetch(path + (qs ? "?" + qs : ""), {headers: {Accept: "application/json"}});
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) throw new Error(`${path}: ${(body && body.error) || "HTTP " + r.status}`);
  if (body === null) throw new Error(`${path}: not JSON`);
  return body;
}
function showError(err) {
  const box = $("error");
  box.textContent = String((err && err.message) || err);
  box.hidden = false;
  console.warn(err);
}
function clearError() { $("error").hidden = true; }
function truncate(s, n) { s = s || ""; return s.length > n ? s.slice(0, n - 1) + "…" : s; }
function fmtNum(v) { return Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000); }
function hash(name) {  // FNV-1a, as an unsigned 32-bit integer
  let h = 2166136261;
  for (const c of String(name)) h = Math.imul(h ^ c.codePointAt(0), 16777619);
  return h >>> 0;
}
const colourOf = (name) => `hsl(${hash(name) % 360} 62% 42%)`;

// ---- Game time ---------------------------------------------------------------------------
const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const pad = (n) => String(n).padStart(2, "0");
function parseIso(s) {  // zone-less ISO time as UTC milliseconds (NaN if not one)
  const m = /^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?)?$/.exec(String(s).trim());
  return m ? Date.UTC(+m[1], m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0)) : NaN;
}
function fmtClock(ms) {
  const d = new Date(ms);
  return `${DAYS[d.getUTCDay()]} ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}
const stepMs = (step) => startMs + step * meta.step_seconds * 1000;
const hms = (iso) => (/T(\d\d:\d\d:\d\d)/.exec(iso || "") || [, iso || ""])[1];
function showClock(step, iso) {
  $("clock-time").textContent = fmtClock(iso && !isNaN(parseIso(iso)) ? parseIso(iso) : stepMs(step));
  $("clock-step").textContent = `step ${step}`;
}
// "HH:MM[:SS]" on the run's first day, an ISO time, or "step N" (or a bare N) -> a step.
function parseJump(text) {
  const s = text.trim();
  let m = /^(?:step\s*)?(-?\d+)$/i.exec(s);
  if (m) return +m[1];
  let t = NaN;
  m = /^(\d{1,2}):(\d\d)(?::(\d\d))?$/.exec(s);
  if (m) t = startMs - (startMs % 86400000) + ((+m[1]) * 3600 + (+m[2]) * 60 + (+(m[3] || 0))) * 1000;
  else t = parseIso(s);
  return isNaN(t) ? null : Math.round((t - startMs) / (meta.step_seconds * 1000));
}

// ---- World map: sectors ------------------------------------------------------------------
function buildSectors() {
  const layer = $("sectors");
  for (const s of meta.world.sectors || []) {
    const g = sv("g", {class: "sector", "data-sector": s.name});
    const rect = sv("rect", {rx: 6, ry: 6});
    const label = sv("text", {class: "sector-name", x: 8, y: 15}, s.name);
    g.append(rect, label);
    layer.append(g);
    // arena names wrapped into at most two short lines of small text inside the box
    const lines = [];
    for (const ar of s.arenas || []) {
      const n = lines.length;
      if (n && (lines[n - 1] + " · " + ar).length <= 36) lines[n - 1] += " · " + ar;
      else lines.push(ar);
    }
    if (lines.length > 2) lines.splice(1, lines.length - 1, truncate(lines.slice(1).join(" · "), 36));
    g.prepend(sv("title", {}, `${s.name}: ${(s.arenas || []).join(", ")}`));
    let w = label.getComputedTextLength() + 16;
    lines.forEach((line, i) => {
      const t = sv("text", {class: "arena", x: 8, y: 28 + i * 11}, line);
      g.append(t);
      w = Math.max(w, t.getComputedTextLength() + 16);
    });
    const h = 22 + lines.length * 11;
    rect.setAttribute("width", w);
    rect.setAttribute("height", h);
    sectors.set(s.name, {name: s.name, wx: +s.x || 0, wy: +s.y || 0, x: 0, top: 0, w, h, g});
  }
}
function layoutSectors() {
  const r = $("map").getBoundingClientRect();
  view.w = Math.max(320, r.width);
  view.h = Math.max(240, r.height);
  const m = 60, ww = meta.world.width || 1, wh = meta.world.height || 1;
  const list = [...sectors.values()];
  for (const s of list) {
    s.x = m + (s.wx / ww) * (view.w - 2 * m);
    s.top = m / 2 + (s.wy / wh) * (view.h - 2 * m);
  }
  relax(list);
  for (const s of list) s.g.setAttribute("transform", `translate(${s.x - s.w / 2},${s.top})`);
  view.vb = {x: 0, y: 0, w: view.w, h: view.h};
  applyViewBox();
}
// Push overlapping sector footprints (box plus room for agents below) apart a little.
function relax(list) {
  const padX = 8, below = 40;
  for (let it = 0; it < 400; it++) {
    let moved = false;
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i], b = list[j];
        const ox = (a.w + b.w) / 2 + padX - Math.abs(a.x - b.x);
        const ay = a.top + (a.h + below) / 2, by = b.top + (b.h + below) / 2;
        const oy = (a.h + b.h) / 2 + below - Math.abs(ay - by);
        if (ox <= 0 || oy <= 0) continue;
        moved = true;
        // along the line between the centres (so crowded columns can slide sideways)
        let dx = b.x - a.x, dy = by - ay;
        const len = Math.hypot(dx, dy) || 1, push = Math.min(ox, oy) / 2 + 0.5;
        if (len === 1 && !dx && !dy) dx = 1;
        dx /= len; dy /= len;
        a.x -= dx * push; a.top -= dy * push; b.x += dx * push; b.top += dy * push;
      }
    }
    for (const s of list) {
      s.x = Math.min(Math.max(s.x, s.w / 2 + 4), view.w - s.w / 2 - 4);
      s.top = Math.min(Math.max(s.top, 4), view.h - s.h - below - 30);
    }
    if (!moved) break;
  }
}
function sectorOfPlace(place) {
  if (!place) return null;
  const head = String(place).split(":")[0];
  if (sectors.has(head)) return sectors.get(head);
  for (const s of sectors.values()) if (place.startsWith(s.name + ":") || place === s.name) return s;
  return null;
}

// ---- World map: zoom and pan (viewBox) ---------------------------------------------------
function applyViewBox() {
  const b = view.vb;
  $("map").setAttribute("viewBox", `${b.x} ${b.y} ${b.w} ${b.h}`);
}
function setupZoom() {
  const svg = $("map");
  let drag = null, dragged = false;
  svg.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = svg.getBoundingClientRect(), b = view.vb;
    const k = Math.min(Math.max(b.w * Math.exp(e.deltaY * 0.0015), view.w / 10), view.w) / b.w;
    const fx = (e.clientX - r.left) / r.width, fy = (e.clientY - r.top) / r.height;
    const px = b.x + fx * b.w, py = b.y + fy * b.h;
    b.w *= k; b.h *= k; b.x = px - fx * b.w; b.y = py - fy * b.h;
    applyViewBox();
  }, {passive: false});
  svg.addEventListener("pointerdown", (e) => { drag = {x: e.clientX, y: e.clientY}; dragged = false; });
  svg.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!dragged && Math.abs(dx) + Math.abs(dy) < 4) return;
    dragged = true;
    const s = view.vb.w / svg.getBoundingClientRect().width;
    view.vb.x -= dx * s; view.vb.y -= dy * s;
    drag = {x: e.clientX, y: e.clientY};
    applyViewBox();
  });
  window.addEventListener("pointerup", () => { drag = null; });
  svg.addEventListener("dblclick", () => { view.vb = {x: 0, y: 0, w: view.w, h: view.h}; applyViewBox(); });
  svg.addEventListener("click", (e) => {
    if (dragged) { dragged = false; return; }
    const g = e.target.closest(".agent");
    if (g) openAgent(g.getAttribute("data-name"));
  });
  new ResizeObserver(debounce(() => { layoutSectors(); if (lastState) drawAgents(lastState); }, 100))
    .observe($("map-wrap"));
}

// ---- World map: agent markers (reused between redraws, keyed by name) --------------------
function marker(name) {
  let m = markers.get(name);
  if (m) return m;
  const g = sv("g", {class: "agent", "data-name": name});
  const title = sv("title");
  const hit = sv("rect", {class: "hit", x: -9, y: -12, height: 26, width: 20});  // click target
  const circle = sv("circle", {r: 6, fill: colourOf(name)});
  const label = sv("text", {class: "agent-name", x: 10, y: -1}, name);
  const act = sv("text", {class: "agent-activity", x: 10, y: 10});
  g.append(title, hit, circle, label, act);
  $("agents").append(g);
  m = {g, title, hit, act, text: null, tip: null, cls: null, x: 0, y: 0, nameW: name.length * 6.4};
  markers.set(name, m);
  return m;
}
const talking = (a) => ((a.kind === "talk" || a.kind === "wait") && !!a.with) || a.kind === "conversation";
const pairKey = (a) => [a.name, a.with].sort().join("\u0000");

function positions(agents) {  // name -> [x, y, compact]
  const pos = new Map(), groups = new Map(), centre = {x: view.w / 2, top: view.h / 2, w: 0, h: 0};
  for (const a of agents) {
    const to = sectors.get(a.sector) || sectorOfPlace(a.place) || sectorOfPlace(homes.get(a.name)) || centre;
    if (a.travelling) {
      const from = sectorOfPlace(a.from) || to;
      const p = a.progress == null ? 0.5 : Math.min(Math.max(+a.progress, 0), 1);
      const h = hash(a.name), jx = (h % 13) - 6, jy = ((h >>> 8) % 13) - 6;  // travellers apart
      const fy = from.top + from.h + 12, ty = to.top + to.h + 12;
      pos.set(a.name, [from.x + (to.x - from.x) * p + jx, fy + (ty - fy) * p + jy]);
    } else {
      if (!groups.has(to)) groups.set(to, []);
      groups.get(to).push(a);
    }
  }
  for (const [s, list] of groups) {
    // partners next to each other, then by name
    const key = (a) => (a.with && talking(a) ? pairKey(a) : a.name) + "\u0001" + a.name;
    list.sort((a, b) => (key(a) < key(b) ? -1 : 1));
    const n = list.length, compact = n > CROWD;
    // up to 4 in a column, up to CROWD in two columns, more as a compact block of dots
    const cw = compact ? 16 : 230, ch = compact ? 16 : 26;
    const cols = compact ? Math.ceil(Math.sqrt(n * 2.5)) : n <= 4 ? 1 : 2;
    const x0 = Math.max(10, Math.min(view.w - cols * cw,
      cols === 1 ? s.x - s.w / 2 + 10 : s.x - (cols * cw) / 2 + (compact ? cw / 2 : 8)));
    const y0 = s.top + s.h + 11;
    list.forEach((a, k) => pos.set(a.name, [x0 + (k % cols) * cw, y0 + Math.floor(k / cols) * ch, compact]));
  }
  declutter(agents, pos);
  return pos;
}
// Shift a marker down while its label box overlaps one placed before it (top to bottom).
function declutter(agents, pos) {
  const boxes = agents.map((a) => {
    const [x, y, compact] = pos.get(a.name);
    const w = compact ? 12 : 20 + Math.max(a.name.length * 6.4, Math.min((a.activity || "").length, 40) * 5.3);
    return {a, x: x - (compact ? 6 : 9), y: y - (compact ? 6 : 12), w, h: compact ? 12 : 25};
  }).sort((p, q) => p.y - q.y || p.x - q.x);
  const placed = [];
  for (const b of boxes) {
    for (let tries = 0; tries < 12; tries++) {
      const hit = placed.find((o) => b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h);
      if (!hit) break;
      b.y = hit.y + hit.h + 1;
    }
    placed.push(b);
    const p = pos.get(b.a.name);
    p[1] = b.y + (p[2] ? 6 : 12);
  }
}

function drawAgents(state) {
  const pos = positions(state.agents), seen = new Set();
  for (const a of state.agents) {
    const m = marker(a.name), [x, y, compact] = pos.get(a.name);
    seen.add(a.name);
    const cls = "agent" + (a.travelling ? " travelling" : "") + (talking(a) ? " talking" : "") +
      (compact ? " compact" : "") + (a.name === selected ? " selected" : "");
    if (cls !== m.cls) { m.g.setAttribute("class", cls); m.cls = cls; }
    if (x !== m.x || y !== m.y) { m.g.setAttribute("transform", `translate(${x},${y})`); m.x = x; m.y = y; }
    m.g.setAttribute("data-place", a.place || "");
    m.g.setAttribute("data-kind", a.kind || "");
    const act = a.activity || "";
    if (act !== m.text) {
      const shown = truncate(act, 40);
      m.act.textContent = shown;
      m.hit.setAttribute("width", Math.round(20 + Math.max(m.nameW, shown.length * 5.3)));
      m.text = act;
    }
    const tip = `${a.name}: ${act || a.kind || ""}` + (a.with ? ` (with ${a.with})` : "") +
      (a.travelling ? ` — from ${a.from} to ${a.place}` : a.place ? ` — ${a.place}` : "");
    if (tip !== m.tip) { m.title.textContent = tip; m.tip = tip; }
  }
  for (const [name, m] of markers) if (!seen.has(name)) { m.g.remove(); markers.delete(name); }
  // conversation pairs: one line per pair, lines reused by index
  const layer = $("pairs"), done = new Set();
  let i = 0;
  for (const a of state.agents) {
    if (!talking(a) || !a.with || !pos.has(a.with)) continue;
    const key = pairKey(a);
    if (done.has(key)) continue;
    done.add(key);
    const line = layer.children[i++] || layer.appendChild(sv("line", {class: "pair"}));
    const [x1, y1] = pos.get(a.name), [x2, y2] = pos.get(a.with);
    line.setAttribute("x1", x1); line.setAttribute("y1", y1);
    line.setAttribute("x2", x2); line.setAttribute("y2", y2);
  }
  while (layer.children.length > i) layer.lastChild.remove();
}

// ---- State loading: one request in flight, always ending on the latest wanted step --------
let wanted = null, loading = false, waiters = [];
function requestState(step) {
  wanted = step;
  if (!loading) loadStates();
}
async function loadStates() {
  loading = true;
  while (wanted !== null) {
    const step = wanted;
    wanted = null;
    try { drawState(await api("/api/state", {step})); clearError(); } catch (e) { showError(e); }
  }
  loading = false;
  waiters.splice(0).forEach((resolve) => resolve(V.step));
}
function drawState(state) {
  lastState = state;
  drawAgents(state);
  V.step = state.step;
  showClock(state.step, state.time);
  if (!V.ready) { V.ready = true; document.body.classList.add("ready"); }
  loadLog();
  if (selected) refreshAgent();
}

// ---- Time control: slider, play, speed, jump, follow ------------------------------------
const slider = $("slider");
const requestSoon = debounce(() => requestState(+slider.value), SLIDER_DEBOUNCE_MS, 250);
function clamp(step) { return Math.max(Math.min(Math.round(step), meta.steps.last), meta.steps.first); }
function setFollowing(on) {
  following = live && on;
  $("follow").hidden = !live || following;
}
function goTo(step) {
  const s = clamp(+step);
  if (!Number.isFinite(s)) return Promise.resolve(V.step);
  slider.value = s;
  setFollowing(s >= meta.steps.last);
  showClock(s);
  const done = new Promise((resolve) => waiters.push(resolve));
  requestState(s);
  return done;
}
function setPlaying(on) {
  clearInterval(timer);
  timer = on ? setInterval(tick, TICK_MS) : null;
  $("play").textContent = on ? "Pause" : "Play";
}
function tick() {
  const s = +slider.value, last = meta.steps.last;
  if (s >= last) { if (!live) setPlaying(false); return; }  // a live run waits for new steps
  goTo(s + (+$("speed").value || 1));
}
const JUMP_HELP = "HH:MM on the run's first day, an ISO time (2024-03-04T07:30) or step N";
function setupControls() {
  $("jump").title = JUMP_HELP;
  slider.min = meta.steps.first;
  slider.max = meta.steps.last;
  slider.addEventListener("input", () => {
    const s = +slider.value;
    setFollowing(s >= meta.steps.last);
    showClock(s);
    requestSoon();
  });
  $("play").addEventListener("click", () => {
    if (timer) return setPlaying(false);
    if (!live && +slider.value >= meta.steps.last) goTo(meta.steps.first);
    setPlaying(true);
  });
  $("follow").addEventListener("click", () => goTo(meta.steps.last));
  $("jump-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const box = $("jump"), step = parseJump(box.value);
    box.classList.toggle("invalid", step === null);
    box.title = (step === null ? "not understood. " : "") + JUMP_HELP;
    if (step !== null) goTo(step);
  });
}
function setLast(last) {
  meta.steps.last = last;
  slider.max = last;
}

// ---- Live mode: server-sent events ----------------------------------------------------------
function openStream() {
  stream = new EventSource("/api/stream");
  stream.addEventListener("step", (e) => {
    let last;
    try { last = JSON.parse(e.data).last; } catch (_) { return; }
    if (!Number.isInteger(last) || last <= meta.steps.last) return;
    const wasFollowing = following;
    setLast(last);
    if (wasFollowing) goTo(last); else setFollowing(false);
  });
  stream.addEventListener("end", async () => {
    stream.close();
    stream = null;
    const wasFollowing = following;
    try {  // the run has stopped: take its final status, last step and measures
      const m = await api("/api/meta");
      meta.run = m.run;
      meta.measures = m.measures;
      setLast(Math.max(meta.steps.last, m.steps.last));
    } catch (err) { showError(err); }
    if (wasFollowing) goTo(meta.steps.last);
    live = false;
    setFollowing(false);
    showHeader();
    showMeasures();
  });
}

// ---- Event log ---------------------------------------------------------------------------------
function setupFilters() {
  const sel = $("filter-agent");
  for (const a of [...meta.agents].sort((x, y) => (x.name < y.name ? -1 : 1))) {
    sel.append(el("option", {value: a.name}, a.name));
  }
  sel.addEventListener("change", loadLog);
  const box = $("filter-kinds");
  for (const k of meta.kinds) {
    const input = el("input", {type: "checkbox", value: k});
    input.checked = !HIDDEN_KINDS.includes(k);
    input.addEventListener("change", loadLog);
    const label = el("label", {class: "kind", "data-kind": k});
    label.append(input, el("span", {}, k));
    box.append(label);
  }
  $("log").addEventListener("click", (e) => {
    const a = e.target.closest(".ev-agent[data-name]");
    if (a) { e.preventDefault(); openAgent(a.getAttribute("data-name")); }
  });
}
const loadLog = latest(async () => {
  if (V.step === null) return;
  const to = V.step, kinds = [...$("filter-kinds").querySelectorAll("input:checked")].map((i) => i.value);
  let from = Math.max(meta.steps.first, to - LOG_WINDOW), res = {events: [], truncated: false};
  try {
    while (kinds.length) {  // a window too full for the limit is halved, so the newest show
      res = await api("/api/events", {from, to, agent: $("filter-agent").value, kind: kinds.join(","),
                                      limit: LOG_LIMIT});
      if (!res.truncated || from >= to) break;
      from = to - Math.floor((to - from) / 2);
    }
  } catch (e) { return showError(e); }
  renderLog(res.events || [], from, to, res.truncated);
});
function renderLog(events, from, to, truncated) {
  const frag = document.createDocumentFragment();
  for (const ev of events) {
    const row = el("div", {class: ev.step === to ? "event now" : "event", "data-kind": ev.kind,
                           "data-agent": ev.agent || "", "data-step": ev.step});
    row.append(el("span", {class: "ev-time", title: `step ${ev.step}`}, hms(ev.time)));
    if (ev.agent) {
      const a = el("a", {class: "ev-agent", href: "#", "data-name": ev.agent}, ev.agent);
      a.style.color = colourOf(ev.agent);
      row.append(a);
    } else row.append(el("span", {class: "ev-agent none"}, "scenario"));
    row.append(el("span", {class: "ev-kind"}, ev.kind));
    row.append(el("span", {class: "ev-text", title: ev.location || null}, ev.text || ""));
    frag.append(row);
  }
  if (!events.length) frag.append(el("div", {class: "empty muted"}, "no events in this window"));
  const log = $("log");
  log.replaceChildren(frag);
  log.scrollTop = log.scrollHeight;
  $("log-range").textContent = `steps ${from}–${to}` + (truncated ? ` (first ${LOG_LIMIT})` : "");
}

// ---- Agent panel ---------------------------------------------------------------------------------
const openEvidence = new Set();  // reflection ids whose evidence is shown
let panelFor = null;             // agent the panel body currently shows
function openAgent(name) {
  if (!name) return;
  selected = name;
  $("agent-panel").hidden = false;
  $("agent-title").textContent = name;
  $("agent-dot").style.background = colourOf(name);
  markSelected();
  loadAgent();
}
function closeAgent() {
  selected = null;
  panelFor = null;
  $("agent-panel").hidden = true;
  markSelected();
}
function markSelected() {
  for (const [name, m] of markers) {
    m.g.classList.toggle("selected", name === selected);
    m.cls = m.g.getAttribute("class");
  }
}
const loadAgent = latest(async () => {
  const name = selected, step = V.step;
  if (!name || step === null) return;
  try {
    const d = await api("/api/agent", {name, step});
    if (selected === name) renderAgent(d);
  } catch (e) { showError(e); }
});
const refreshAgent = debounce(loadAgent, 250);

function section(title, count) {
  const s = el("section", {class: "panel-section"});
  s.append(el("h3", {}, count == null ? title : `${title} (${count})`));
  return s;
}
function dl(pairs) {
  const d = el("dl");
  for (const [k, v] of pairs) {
    if (v == null || v === "") continue;
    d.append(el("dt", {}, k));
    const dd = el("dd");
    if (v instanceof Node) dd.append(v); else dd.textContent = String(v);
    d.append(dd);
  }
  return d;
}
function agentLink(name) {
  if (!meta.agents.some((a) => a.name === name)) return el("span", {}, name);
  const a = el("a", {href: "#", class: "agent-link"}, name);
  a.addEventListener("click", (e) => { e.preventDefault(); openAgent(name); });
  return a;
}
function renderAgent(d) {
  const body = $("agent-body"), same = panelFor === d.name, scroll = body.scrollTop;
  const frag = document.createDocumentFragment();
  // now
  const now = lastState && lastState.agents.find((a) => a.name === d.name);
  if (now) {
    frag.append(el("p", {class: "now"}, `${now.activity || now.kind} @ ${now.place || "?"}` +
      (now.with ? ` — with ${now.with}` : "") + (now.travelling ? ` (travelling from ${now.from})` : "")));
  }
  // persona
  const p = d.persona || {}, rel = el("dl", {class: "relationships"});
  for (const [who, what] of Object.entries(p.relationships || {})) {
    const dt = el("dt");
    dt.append(agentLink(who));
    rel.append(dt, el("dd", {}, what));
  }
  const ps = section("Persona");
  ps.append(dl([["age", p.age], ["traits", p.traits], ["lifestyle", p.lifestyle],
                ["situation", p.current_situation], ["home", p.home],
                ["relationships", rel.childNodes.length ? rel : null]]));
  frag.append(ps);
  // plan
  const plan = d.plan, pl = section(plan ? `Plan for ${plan.date}` : "Plan");
  if (!plan) pl.append(el("p", {class: "muted"}, "no plan known for this day"));
  else {
    if (plan.wake_hour != null) pl.append(el("p", {class: "muted"}, `wakes at ${plan.wake_hour}:00`));
    if ((plan.broad_strokes || []).length) {
      const ol = el("ol", {class: "strokes"});
      for (const s of plan.broad_strokes) ol.append(el("li", {}, s));
      pl.append(ol);
    }
    const ul = el("ul", {class: "plan"});
    for (const b of plan.blocks || []) {
      const li = el("li", {class: "block" + (b.current ? " current" : "") + (b.sub ? " sub" : "")});
      li.append(el("span", {class: "block-time"}, `${b.start}-${b.end}`), ` ${b.activity}`);
      if (b.location) li.append(el("span", {class: "block-loc"}, ` @ ${b.location}`));
      ul.append(li);
    }
    pl.append(ul);
  }
  frag.append(pl);
  // memories
  const mems = d.memories || [], ms = section("Memories", mems.length), mul = el("ul", {class: "memories"});
  for (const m of mems) {
    const li = el("li", {class: "memory", "data-kind": m.kind});
    const imp = el("span", {class: "importance", title: `importance ${m.importance}`});
    const bar = el("span", {class: "bar"});
    bar.style.width = `${Math.min(Math.max(+m.importance || 0, 0), 10) * 10}%`;
    imp.append(bar, el("span", {class: "num"}, m.importance));
    li.append(imp, el("span", {class: "mem-time"}, hms(m.created)), el("span", {class: "mem-kind"}, m.kind),
              el("span", {class: "mem-text"}, m.description));
    mul.append(li);
  }
  ms.append(mul);
  frag.append(ms);
  // reflections with evidence toggles
  const refl = d.reflections || [], rs = section("Reflections", refl.length);
  for (const r of refl) {
    const div = el("div", {class: "reflection"}), ev = r.evidence || [];
    div.append(el("span", {class: "mem-time"}, hms(r.created)), el("span", {}, r.description), " ");
    const btn = el("button", {type: "button", class: "evidence-toggle"}, `evidence (${ev.length})`);
    const list = el("ul", {class: "evidence"});
    for (const e of ev) list.append(el("li", {}, e.description));
    list.hidden = !openEvidence.has(r.record_id);
    btn.addEventListener("click", () => {
      list.hidden = !list.hidden;
      if (list.hidden) openEvidence.delete(r.record_id); else openEvidence.add(r.record_id);
    });
    div.append(btn, list);
    rs.append(div);
  }
  frag.append(rs);
  // retrievals as candidate tables
  const retr = d.retrievals || [], rt = section("Retrievals", retr.length);
  const cols = ["recency", "importance", "relevance", "score", "rank"];
  for (const r of retr) {
    const div = el("div", {class: "retrieval"});
    div.append(el("p", {class: "query"}, `step ${r.step}: ${r.query}`));
    const table = el("table", {class: "candidates"}), head = el("tr");
    for (const c of ["memory", ...cols]) head.append(el("th", {}, c));
    table.append(el("thead"), el("tbody"));
    table.tHead.append(head);
    for (const c of r.candidates || []) {
      const tr = el("tr", {class: c.returned ? "returned" : null});
      tr.append(el("td", {class: "desc"}, c.description));
      for (const k of cols) tr.append(el("td", {class: "num"}, typeof c[k] === "number" ? fmtNum(c[k]) : c[k] ?? ""));
      table.tBodies[0].append(tr);
    }
    div.append(table);
    rt.append(div);
  }
  frag.append(rt);
  // conversations as transcripts
  const convs = d.conversations || [], cs = section("Conversations", convs.length);
  for (const c of convs) {
    const div = el("div", {class: "conversation"});
    const head = el("p", {class: "conv-head"}, `${hms(c.time)} (step ${c.step}) with `);
    head.append(agentLink(c.with || "?"));
    div.append(head);
    if (c.summary) div.append(el("p", {class: "summary"}, c.summary));
    for (const l of c.lines || []) {
      const line = el("p", {class: "line"});
      line.append(el("b", {}, `${l.speaker}: `), l.text || "");
      div.append(line);
    }
    cs.append(div);
  }
  frag.append(cs);
  body.replaceChildren(frag);
  if (same) body.scrollTop = scroll;
  else {
    body.scrollTop = 0;
    panelFor = d.name;
  }
}

// ---- Measures (generic rendering of the summary object) ------------------------------------
function renderValue(v) {
  if (v === null || v === undefined) return el("span", {class: "muted"}, "—");
  if (typeof v === "number") return el("span", {class: "num"}, fmtNum(v));
  if (typeof v !== "object") return el("span", {}, String(v));
  if (Array.isArray(v)) {
    if (v.every((x) => x === null || typeof x !== "object")) {
      return el("span", {class: "list"}, v.map((x) => (typeof x === "number" ? fmtNum(x) : String(x))).join(", "));
    }
    if (v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
      const keys = [...new Set(v.flatMap(Object.keys))], table = el("table"), head = el("tr");
      for (const k of keys) head.append(el("th", {}, k));
      table.append(head);
      for (const row of v) {
        const tr = el("tr");
        for (const k of keys) { const td = el("td"); td.append(renderValue(row[k])); tr.append(td); }
        table.append(tr);
      }
      return table;
    }
    const ol = el("ol");
    for (const x of v) { const li = el("li"); li.append(renderValue(x)); ol.append(li); }
    return ol;
  }
  const d = el("dl");
  for (const [k, x] of Object.entries(v)) {
    const dd = el("dd");
    dd.append(renderValue(x));
    d.append(el("dt", {}, k), dd);
  }
  return d;
}
function showMeasures() {
  const m = meta.measures, box = $("measures");
  box.hidden = !m;
  if (!m) return;
  $("measures-summary").replaceChildren(renderValue(m.summary ?? {}));
  const figs = $("measures-figures");
  figs.replaceChildren();
  for (const url of m.figures || []) {
    const fig = el("figure");
    fig.append(el("img", {src: url, alt: url.split("/").pop(), loading: "lazy"}),
               el("figcaption", {}, url.split("/").pop()));
    figs.append(fig);
  }
}

// ---- Header and start-up ----------------------------------------------------------------------
function showHeader() {
  const r = meta.run || {};
  $("run-name").textContent = r.name || "simulacra view";
  document.title = `${r.name || "run"} · simulacra view`;
  $("run-info").textContent = [meta.world && meta.world.name, r.folder, r.model && `model ${r.model}`,
    r.seed != null && `seed ${r.seed}`, `${meta.agents.length} agents`].filter(Boolean).join(" · ");
  $("run-status").textContent = r.status || "";
  $("run-status").setAttribute("data-status", r.status || "");
  $("live").hidden = !live;
}
async function init() {
  try { meta = await api("/api/meta"); } catch (e) { return showError(e); }
  V.meta = meta;
  meta.agents = meta.agents || [];
  meta.world = meta.world || {width: 1, height: 1, sectors: []};
  for (const a of meta.agents) homes.set(a.name, a.home);
  meta.kinds = meta.kinds || [];
  startMs = parseIso(meta.start);
  live = !!(meta.run && meta.run.live);
  showHeader();
  buildSectors();
  layoutSectors();
  setupZoom();
  setupControls();
  setupFilters();
  showMeasures();
  $("agent-close").addEventListener("click", closeAgent);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && selected) closeAgent(); });
  await goTo(live ? meta.steps.last : meta.steps.first);
  if (live) openStream();
}
init();
})();
