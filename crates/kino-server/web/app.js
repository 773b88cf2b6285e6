// Kino's web app: one page, hash routes, the JSON API under /api/ only.
// Catalog text comes from strangers: it only ever reaches the DOM through textContent and
// attribute setters (never innerHTML). Writes carry the per-launch token from the page's meta.
"use strict";

const TOKEN = document.querySelector('meta[name="kino-token"]').content;
const view = document.getElementById("view");
const searchInput = document.getElementById("search");
let cleanup = [];

// ---------- helpers ----------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(code, message, status) { super(message); this.code = code; this.status = status; }
}

async function api(method, path, body, opts) {
  const init = { method, headers: {}, credentials: "same-origin", ...(opts || {}) };
  if (method !== "GET" && method !== "HEAD") init.headers["x-kino-token"] = TOKEN;
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!r.ok) {
    throw new ApiError(data && data.error || "http_" + r.status, data && data.message || r.statusText, r.status);
  }
  return data;
}

function toast(msg) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 3500);
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function fmtRate(bps) { return fmtBytes(Math.round(bps || 0)) + "/s"; }
function fmtTime(s) {
  s = Math.max(0, Math.floor(s || 0));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
}
function fmtAgo(unix) {
  if (!unix) return "never";
  const d = Date.now() / 1000 - unix;
  if (d < 90) return "just now";
  if (d < 5400) return Math.round(d / 60) + " min ago";
  if (d < 129600) return Math.round(d / 3600) + " h ago";
  return Math.round(d / 86400) + " days ago";
}

function posterBox(url, title, progress) {
  const box = el("div", { class: "poster" });
  if (url) {
    box.append(el("img", { src: url, alt: "", loading: "lazy", decoding: "async" }));
  } else {
    box.append(el("div", { class: "initial", text: (title || "?").trim().charAt(0).toUpperCase() }));
  }
  if (progress !== undefined) {
    const bar = el("span");
    bar.style.width = Math.min(100, Math.max(0, progress * 100)).toFixed(1) + "%";
    box.append(el("div", { class: "progress" }, bar));
  }
  return box;
}

function card(t, progress) {
  const meta = [t.year, (t.genres || []).slice(0, 2).join(", ") || t.publisher].filter(Boolean).join(" · ");
  return el("a", { class: "card", href: "#/title/" + enc(t.key) + "/" + enc(t.id), "data-title-id": t.id },
    posterBox(t.poster_url, t.title, progress),
    el("div", { class: "name", text: t.title, title: t.title }),
    el("div", { class: "meta", text: meta }));
}

// replaceChildren, skipping null/undefined/false (which replaceChildren would print).
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function enc(s) { return encodeURIComponent(s); }
function setView(...nodes) { fill(view, ...nodes); }
function errorBox(e) { return el("div", { class: "notice error", role: "alert", text: e.message || String(e) }); }

// ---------- home and search ----------
let homeState = { genre: "" };

async function home() {
  const q = searchInput.value.trim();
  const root = el("div", { id: "home" });
  const chips = el("div", { class: "chips", id: "genres" });
  const continueBox = el("section", { id: "continue" });
  const gridTitle = el("h2", { text: q ? "Results" : "All titles" });
  const grid = el("div", { class: "grid", id: "grid" });
  root.append(continueBox, el("h2", { text: "Browse" }), chips, gridTitle, grid);
  setView(root);

  api("GET", "/api/history").then((h) => {
    if (!h.continue.length || searchInput.value.trim()) return;
    continueBox.append(el("h2", { text: "Continue watching" }),
      el("div", { class: "row", id: "continue-row" },
        h.continue.map((c) => card(c, c.duration ? c.position / c.duration : undefined))));
  }).catch(() => {});

  api("GET", "/api/genres").then((g) => {
    const all = ["", ...g.genres];
    for (const name of all) {
      const chip = el("button", { class: "chip" + (homeState.genre === name ? " active" : ""), type: "button",
        text: name || "All", "data-genre": name });
      chip.addEventListener("click", () => {
        homeState.genre = name;
        for (const c of chips.children) c.classList.toggle("active", c === chip);
        loadGrid(grid, gridTitle);
      });
      chips.append(chip);
    }
  }).catch(() => {});
  await loadGrid(grid, gridTitle);
}

let gridSeq = 0;
async function loadGrid(grid, gridTitle) {
  const seq = ++gridSeq;
  const q = searchInput.value.trim();
  const params = new URLSearchParams();
  if (q) params.set("q", q);
  if (homeState.genre) params.set("genre", homeState.genre);
  try {
    const r = await api("GET", "/api/titles?" + params.toString());
    if (seq !== gridSeq) return; // a newer search answered first
    gridTitle.textContent = q ? "Results for “" + q + "”" : homeState.genre ? homeState.genre : "All titles";
    const cont = document.getElementById("continue");
    if (cont) cont.hidden = !!q;
    if (!r.titles.length) {
      fill(grid, el("div", { class: "empty", text: q || homeState.genre
        ? "No titles match. Try other words."
        : "No titles yet. Subscribe to a publisher on the Publishers page." }));
      return;
    }
    fill(grid, ...r.titles.map((t) => card(t)));
  } catch (e) {
    fill(grid, errorBox(e));
  }
}

let searchTimer = null;
searchInput.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    const grid = document.getElementById("grid");
    if (grid && location.hash.replace(/^#\/?/, "") === "") {
      loadGrid(grid, grid.previousElementSibling);
    } else {
      location.hash = "#/";
    }
  }, 120);
});

// ---------- title page ----------
function canBrowserPlay(s) {
  if (s.browser.verdict === "no") return { ok: false, why: s.browser.reasons.join("; ") };
  const v = document.createElement("video");
  const type = s.browser.mime_with_codecs || s.mime;
  const answer = v.canPlayType(type);
  if (answer === "") return { ok: false, why: "this browser cannot play " + type };
  return { ok: true, why: s.browser.verdict === "unknown" ? "codecs not stated by the catalog" : "" };
}

function streamAbsUrl(s) { return location.origin + s.stream_url; }

async function titlePage(key, id) {
  let t;
  try { t = await api("GET", "/api/titles/" + enc(key) + "/" + enc(id)); } catch (e) { setView(errorBox(e)); return; }
  document.title = t.title + " · Kino";
  let chosen = 0;
  // Prefer the first stream this browser can play.
  for (const s of t.streams) { if (canBrowserPlay(s).ok) { chosen = s.index; break; } }

  const facts = el("div", { class: "facts" },
    t.year ? el("span", { text: String(t.year) }) : null,
    t.runtime_minutes ? el("span", { text: t.runtime_minutes + " min" }) : null,
    t.genres.length ? el("span", { text: t.genres.join(", ") }) : null,
    el("span", { text: "Licence " + t.licence }));

  const codecBox = el("div", { id: "codec-info" });
  const actions = el("div", { class: "actions" });
  const urlInput = el("input", { id: "stream-url", readonly: true, value: "", "aria-label": "Stream URL" });
  const peersLine = el("dd", { id: "peers-now", text: "looking…" });
  const qualitySelect = t.streams.length > 1 ? el("select", { id: "quality", "aria-label": "Quality" },
    t.streams.map((s) => el("option", { value: s.index, text: s.quality + " · " + s.mime.replace("video/", "") + " · " + fmtBytes(s.size_bytes) }))) : null;

  function render() {
    const s = t.streams[chosen];
    const verdict = canBrowserPlay(s);
    if (qualitySelect) qualitySelect.value = String(chosen);
    urlInput.value = streamAbsUrl(s);
    const codecs = [...s.video_codecs, ...s.audio_codecs];
    fill(codecBox,
      el("div", {},
        el("span", { class: "badge", text: s.quality }),
        el("span", { class: "badge", text: s.mime }),
        codecs.length ? codecs.map((c) => el("span", { class: "badge", text: c })) : el("span", { class: "badge", text: "codecs unknown" }),
        el("span", { class: "badge " + (verdict.ok ? "ok" : "bad"), id: "browser-verdict",
          "data-verdict": verdict.ok ? "yes" : "no", text: verdict.ok ? "Plays in this browser" : "Needs mpv or VLC" })),
      verdict.ok ? null : el("div", { class: "notice", id: "codec-warning", role: "note" },
        "This browser cannot decode this video: " + verdict.why + ". ",
        "Open it in mpv or VLC instead (buttons below)."));
    const resume = t.resume && t.resume.position > 2 && (!t.resume.duration || t.resume.position < t.resume.duration * 0.95);
    fill(actions,
      el("button", { class: "btn primary", id: "play", type: "button", disabled: !verdict.ok,
        onclick: () => { location.hash = "#/play/" + enc(t.key) + "/" + enc(t.id) + "/" + chosen; } },
        resume ? "▶ Resume at " + fmtTime(t.resume.position) : "▶ Play"),
      resume ? el("button", { class: "btn", type: "button", onclick: async () => {
        await api("DELETE", "/api/history/" + enc(t.key) + "/" + enc(t.id)).catch(() => {});
        location.hash = "#/play/" + enc(t.key) + "/" + enc(t.id) + "/" + chosen;
      } }, "Start over") : null,
      el("button", { class: "btn", type: "button", onclick: () => openExternal("mpv") }, "Open in mpv"),
      el("button", { class: "btn", type: "button", onclick: () => openExternal("vlc") }, "Open in VLC"),
      qualitySelect);
  }

  async function ensureLoaded() {
    return api("POST", "/api/play", { key: t.key, id: t.id, stream: chosen });
  }
  async function openExternal(player) {
    try {
      const p = await ensureLoaded();
      await api("POST", "/api/open", { player, infohash: p.infohash, file: p.file });
      toast("Started " + player);
    } catch (e) { toast(e.message); }
  }
  if (qualitySelect) qualitySelect.addEventListener("change", () => { chosen = Number(qualitySelect.value); render(); });

  const copyBtn = el("button", { class: "btn", type: "button", id: "copy-url", onclick: async () => {
    try {
      await ensureLoaded();
      urlInput.select();
      if (navigator.clipboard) await navigator.clipboard.writeText(urlInput.value).catch(() => document.execCommand("copy"));
      else document.execCommand("copy");
      toast("Stream URL copied: open it in any player while Kino runs");
    } catch (e) { toast(e.message); }
  } }, "Copy");

  const info = el("div", {},
    el("h1", { id: "title-name", text: t.title }),
    facts,
    el("p", { class: "synopsis", id: "synopsis", text: t.synopsis || "No synopsis." }),
    codecBox,
    actions,
    el("dl", { class: "kv panel" },
      el("dt", { text: "Publisher" }), el("dd", { text: t.publisher.name }),
      el("dt", { text: "Address" }), el("dd", { class: "mono", text: t.publisher.address }),
      el("dt", { text: "Peers now" }), peersLine,
      el("dt", { text: "Qualities" }), el("dd", { text: t.streams.map((s) => s.quality + " (" + s.mime.replace("video/", "") + ")").join(", ") }),
      el("dt", { text: "Subtitles" }), el("dd", { text: t.subtitles.map((s) => s.language).join(", ") || "none" })),
    el("h2", { text: "Stream URL" }),
    el("p", { class: "muted", text: "For mpv, VLC or any player on this computer, while Kino runs." }),
    el("div", { class: "copy" }, urlInput, copyBtn));

  setView(el("div", { class: "title-page" }, posterBox(t.poster_url, t.title), info));
  render();

  api("GET", "/api/titles/" + enc(key) + "/" + enc(id) + "/peers").then((p) => {
    const n = p.streams.reduce((a, s) => Math.max(a, s.peers), 0);
    peersLine.textContent = n === 0 ? "none found right now" : n + (n === 1 ? " peer" : " peers");
  }).catch(() => { peersLine.textContent = "unknown"; });
}

// ---------- player ----------
async function playerPage(key, id, streamIndex) {
  let t, p;
  try {
    t = await api("GET", "/api/titles/" + enc(key) + "/" + enc(id));
    p = await api("POST", "/api/play", { key, id, stream: Number(streamIndex) || 0 });
  } catch (e) { setView(errorBox(e)); return; }
  document.title = t.title + " · Kino";
  const s = t.streams[Number(streamIndex) || 0];
  const video = el("video", { id: "video", controls: true, autoplay: true, preload: "auto", playsinline: true });
  video.src = p.stream_url;
  t.subtitles.forEach((sub, i) => {
    video.append(el("track", { kind: "subtitles", src: sub.url, srclang: sub.language,
      label: sub.language, default: i === 0 }));
  });
  const spinner = el("div", { class: "spinner", id: "buffering", hidden: true, text: "Buffering…" });
  const hud = el("div", { class: "hud", id: "hud" }, "Starting…");
  const err = el("div", { id: "player-error" });
  const resumeNote = el("div", { id: "resume-note" });

  const back = el("a", { href: "#/title/" + enc(key) + "/" + enc(id), class: "muted" }, "← " + t.title);
  setView(el("div", {},
    el("p", {}, back),
    el("div", { class: "player" }, video, spinner),
    hud, resumeNote, err,
    p.cache_warning ? el("div", { class: "notice", id: "cache-warning", role: "note", text: p.cache_warning }) : null,
    el("p", { class: "keys" },
      el("kbd", { text: "Space" }), " play/pause  ",
      el("kbd", { text: "←" }), el("kbd", { text: "→" }), " 10 s  ",
      el("kbd", { text: "↑" }), el("kbd", { text: "↓" }), " volume  ",
      el("kbd", { text: "F" }), " full screen  ",
      el("kbd", { text: "M" }), " mute  ",
      el("kbd", { text: "C" }), " subtitles")));

  // Resume.
  const r = p.resume;
  if (r && r.position > 2 && (!r.duration || r.position < r.duration * 0.95)) {
    video.addEventListener("loadedmetadata", () => {
      if (video.currentTime < 1) video.currentTime = r.position;
      fill(resumeNote, el("span", { class: "muted", text: "Resumed at " + fmtTime(r.position) + ". " }),
        el("button", { class: "btn small", type: "button", onclick: () => { video.currentTime = 0; fill(resumeNote); } }, "Start over"));
    }, { once: true });
  }

  // Positions: saved every 5 s while playing and when leaving.
  let lastSaved = -1;
  function savePosition(keepalive) {
    if (!isFinite(video.currentTime) || video.currentTime === lastSaved) return;
    lastSaved = video.currentTime;
    const d = isFinite(video.duration) ? video.duration : null;
    api("POST", "/api/history", { key, id, stream: Number(streamIndex) || 0, position: video.currentTime, duration: d },
      keepalive ? { keepalive: true } : undefined).catch(() => {});
  }
  const saver = setInterval(() => { if (!video.paused) savePosition(false); }, 5000);
  video.addEventListener("pause", () => savePosition(false));
  video.addEventListener("seeked", () => savePosition(false));
  video.addEventListener("ended", () => savePosition(false));
  const onHide = () => savePosition(true);
  window.addEventListener("pagehide", onHide);

  // Buffering indicator.
  const waiting = () => { spinner.hidden = false; };
  const playing = () => { spinner.hidden = true; };
  video.addEventListener("waiting", waiting);
  video.addEventListener("stalled", waiting);
  video.addEventListener("playing", playing);
  video.addEventListener("canplay", playing);
  video.addEventListener("error", () => {
    const code = video.error ? video.error.code : 0;
    fill(err, el("div", { class: "notice error", role: "alert" },
      "The browser could not play this stream (media error " + code + "). ",
      "Try mpv or VLC with the stream URL: ", el("span", { class: "mono", text: location.origin + p.stream_url })));
  });

  async function poll() {
    try {
      const st = await api("GET", "/api/status/" + p.infohash + "/" + p.file);
      let ahead = 0;
      for (let i = 0; i < video.buffered.length; i++) {
        if (video.buffered.start(i) <= video.currentTime + 0.5 && video.buffered.end(i) >= video.currentTime) {
          ahead = video.buffered.end(i) - video.currentTime;
        }
      }
      const engineAhead = st.buffered_secs === null || st.buffered_secs === undefined ? null : st.buffered_secs;
      fill(hud,
        el("span", {}, "Buffered ", el("b", { id: "hud-buffered", text: Math.round(Math.max(ahead, engineAhead || 0)) + " s" }), " ahead"),
        el("span", {}, "Download ", el("b", { id: "hud-rate", text: fmtRate(st.down_bps) })),
        // A problem (a full disk) takes the place of the peer count: peers do not help it.
        st.problem
          ? el("span", { class: "problem", id: "hud-problem", role: "alert", title: st.problem_message || "", text: st.problem === "disk_full" ? "Disk full: free some space" : st.problem })
          : el("span", {}, "Peers ", el("b", { id: "hud-peers", text: String(st.peers) })),
        el("span", {}, "Have ", el("b", { text: st.total_bytes ? Math.round(100 * st.have_bytes / st.total_bytes) + "%" : "–" })),
        el("span", {}, "Shared ", el("b", { text: fmtRate(st.up_bps) })),
        st.media && st.media.video_codecs.length ? el("span", { class: "muted", text: [...st.media.video_codecs, ...st.media.audio_codecs].join(" / ") }) : null);
    } catch (_) { /* the next poll tries again */ }
  }
  poll();
  const poller = setInterval(poll, 1000);

  // Keyboard shortcuts.
  function onKey(e) {
    if (e.target instanceof HTMLInputElement || e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    if (k === " " || k === "k") { if (video.paused) video.play(); else video.pause(); }
    else if (k === "ArrowRight" || k === "l") video.currentTime = Math.min(video.duration || Infinity, video.currentTime + 10);
    else if (k === "ArrowLeft" || k === "j") video.currentTime = Math.max(0, video.currentTime - 10);
    else if (k === "ArrowUp") video.volume = Math.min(1, video.volume + 0.1);
    else if (k === "ArrowDown") video.volume = Math.max(0, video.volume - 0.1);
    else if (k === "m") video.muted = !video.muted;
    else if (k === "f") { if (document.fullscreenElement) document.exitFullscreen(); else video.requestFullscreen().catch(() => {}); }
    else if (k === "c") {
      const tr = video.textTracks[0];
      if (tr) tr.mode = tr.mode === "showing" ? "hidden" : "showing";
    } else return;
    e.preventDefault();
  }
  document.addEventListener("keydown", onKey);
  cleanup.push(() => {
    savePosition(true);
    clearInterval(saver); clearInterval(poller);
    document.removeEventListener("keydown", onKey);
    window.removeEventListener("pagehide", onHide);
    video.pause(); video.removeAttribute("src"); video.load();
  });
}

// ---------- settings ----------
async function settingsPage() {
  let s;
  try { s = await api("GET", "/api/settings"); } catch (e) { setView(errorBox(e)); return; }
  const v = s.settings;
  const share = el("input", { type: "checkbox", id: "share-enabled", checked: v.share_enabled });
  const up = el("input", { type: "number", id: "upload-limit", min: 0, step: 1, value: v.upload_limit_kib });
  const ratio = el("input", { type: "number", id: "ratio-limit", min: 0, max: 1000, step: 0.1, value: v.ratio_limit });
  const cache = el("input", { type: "number", id: "cache-limit", min: 0, step: 1, value: v.cache_limit_mib });
  const status = el("div", { id: "settings-status" });
  function showStatus(r) {
    fill(status, r.restart_needed
      ? el("div", { class: "notice", text: "Saved. These settings take effect the next time Kino starts." })
      : el("p", { class: "muted", text: "These settings are in effect." }));
  }
  const form = el("form", { class: "settings", id: "settings-form" },
    el("label", { for: "share-enabled", text: "Share what I watch" }), share,
    el("label", { for: "upload-limit", text: "Upload cap (KiB/s, 0 = none)" }), up,
    el("label", { for: "ratio-limit", text: "Stop sharing a film at ratio (0 = never)" }), ratio,
    el("label", { for: "cache-limit", text: "Disk cache cap (MiB, 0 = none)" }), cache,
    el("span"), el("button", { class: "btn primary", type: "submit", id: "save-settings" }, "Save"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("PUT", "/api/settings", {
        share_enabled: share.checked, upload_limit_kib: Math.max(0, Math.floor(Number(up.value) || 0)),
        ratio_limit: Math.max(0, Number(ratio.value) || 0), cache_limit_mib: Math.max(0, Math.floor(Number(cache.value) || 0)),
      });
      showStatus(r);
      toast("Settings saved");
    } catch (err) { fill(status, errorBox(err)); }
  });
  const dirInput = el("input", { type: "text", id: "data-dir-input", value: s.data_dir, spellcheck: "false", class: "mono" });
  const dirStatus = el("div", { id: "data-dir-status" });
  const dirForm = el("form", { class: "settings", id: "data-dir-form" },
    el("label", { for: "data-dir-input", text: "Data folder (films, catalogs, database)" }), dirInput,
    el("span"), el("button", { class: "btn", type: "submit", id: "save-data-dir" }, "Use this folder"));
  dirForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("PUT", "/api/settings/data-dir", { path: dirInput.value });
      fill(dirStatus, el("div", { class: "notice", text: "Data folder " + r.data_dir_next + ": " + r.message }));
    } catch (err) { fill(dirStatus, errorBox(err)); }
  });
  setView(el("div", {},
    el("h1", { text: "Settings" }),
    el("div", { class: "panel" }, form),
    status,
    el("div", { class: "panel" },
      el("p", { class: "muted" }, "In use now: ", el("span", { class: "mono", id: "data-dir", text: s.data_dir })),
      dirForm),
    dirStatus));
  showStatus(s);
}

// ---------- sharing ----------
async function sharingPage() {
  const body = el("tbody");
  const head = el("p", { class: "muted" });
  setView(el("div", {}, el("h1", { text: "Sharing" }), head,
    el("table", { id: "sharing-table" },
      el("thead", {}, el("tr", {}, el("th", { text: "Title" }), el("th", { class: "num", text: "Size" }),
        el("th", { class: "num", text: "Uploaded" }), el("th", { class: "num", text: "Ratio" }),
        el("th", { class: "num", text: "Peers" }), el("th", { class: "num", text: "Upload rate" }),
        el("th", { text: "Status" }), el("th"))),
      body)));
  async function load() {
    try {
      const r = await api("GET", "/api/sharing");
      head.textContent = r.enabled ? "Kino shares what you watch with other viewers, within your limits (Settings)."
        : "Sharing is off: Kino uploads nothing.";
      if (!r.torrents.length) {
        fill(body, el("tr", {}, el("td", { colspan: 8, class: "muted", text: "Nothing is cached or shared yet." })));
        return;
      }
      fill(body, ...r.torrents.map((t) => el("tr", { "data-infohash": t.infohash },
        el("td", {}, el("div", { text: t.title || t.name }), el("div", { class: "muted mono", text: t.infohash })),
        el("td", { class: "num", text: fmtBytes(t.total_bytes) }),
        el("td", { class: "num", text: fmtBytes(t.uploaded_bytes) }),
        el("td", { class: "num", text: t.ratio.toFixed(2) }),
        el("td", { class: "num", text: String(t.peers) }),
        el("td", { class: "num", text: fmtRate(t.up_bps) }),
        el("td", { text: t.stopped ? "stopped" : t.sharing ? "sharing" : "idle" }),
        el("td", {}, t.stopped ? null : el("button", { class: "btn small", type: "button", onclick: async () => {
          try { await api("POST", "/api/sharing/" + t.infohash + "/stop"); toast("Stopped sharing"); load(); } catch (e) { toast(e.message); }
        } }, "Stop")))));
    } catch (e) { fill(body, el("tr", {}, el("td", { colspan: 8 }, errorBox(e)))); }
  }
  await load();
  const timer = setInterval(load, 3000);
  cleanup.push(() => clearInterval(timer));
}

// ---------- publishers ----------
async function publishersPage() {
  const list = el("tbody");
  const input = el("input", { id: "publisher-address", placeholder: "kino:… or magnet:?xs=urn:btpk:…", autocomplete: "off", spellcheck: "false" });
  const form = el("form", { class: "inline", id: "subscribe-form" }, input,
    el("button", { class: "btn primary", type: "submit" }, "Subscribe"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", "/api/publishers", { address: input.value.trim() });
      input.value = "";
      toast(r.refreshing ? "Subscribed; fetching the catalog…" : "Subscribed; the catalog arrives at the next refresh");
      load();
    } catch (err) { toast(err.message); }
  });
  setView(el("div", {}, el("h1", { text: "Publishers" }),
    el("p", { class: "muted", text: "Catalogs you subscribe to are fetched from other viewers and checked against the publisher's key." }),
    form,
    el("div", { class: "actions" }, el("button", { class: "btn", type: "button", onclick: async () => {
      try { await api("POST", "/api/publishers/refresh"); toast("Refreshing catalogs…"); } catch (e) { toast(e.message); }
    } }, "Refresh all")),
    el("table", { id: "publishers-table" },
      el("thead", {}, el("tr", {}, el("th", { text: "Publisher" }), el("th", { class: "num", text: "Titles" }),
        el("th", { text: "Updated" }), el("th", { text: "Status" }), el("th"))),
      list)));
  async function load() {
    try {
      const r = await api("GET", "/api/publishers");
      if (!r.publishers.length) {
        fill(list, el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No subscriptions yet." })));
        return;
      }
      fill(list, ...r.publishers.map((p) => el("tr", {},
        el("td", {}, el("div", { text: p.name || "(catalog not fetched yet)" }), el("div", { class: "muted mono", text: p.address })),
        el("td", { class: "num", text: String(p.titles) }),
        el("td", { text: fmtAgo(p.updated_at) }),
        el("td", { class: p.last_error ? "" : "muted", text: p.last_error || "ok" }),
        el("td", {}, el("button", { class: "btn small", type: "button", onclick: async () => {
          if (!confirm("Unsubscribe from " + (p.name || p.address) + "? Its titles leave your library.")) return;
          try { await api("DELETE", "/api/publishers/" + p.key); toast("Unsubscribed"); load(); } catch (e) { toast(e.message); }
        } }, "Unsubscribe")))));
    } catch (e) { fill(list, el("tr", {}, el("td", { colspan: 5 }, errorBox(e)))); }
  }
  await load();
  const timer = setInterval(load, 5000);
  cleanup.push(() => clearInterval(timer));
}

// ---------- router ----------
async function route() {
  for (const f of cleanup.splice(0)) { try { f(); } catch (_) { /* ignore */ } }
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = parts[0] || "home";
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === page);
  document.title = "Kino";
  try {
    if (page === "home") await home();
    else if (page === "title" && parts.length === 3) await titlePage(parts[1], parts[2]);
    else if (page === "play" && parts.length === 4) await playerPage(parts[1], parts[2], parts[3]);
    else if (page === "settings") await settingsPage();
    else if (page === "sharing") await sharingPage();
    else if (page === "publishers") await publishersPage();
    else setView(el("div", { class: "empty", text: "No such page." }));
  } catch (e) { setView(errorBox(e)); }
  document.body.dataset.page = page;
  document.body.dataset.ready = "1";
}
window.addEventListener("hashchange", () => { document.body.dataset.ready = "0"; route(); });
route();
// A verified update (found by the running app) is announced once per page load.
api("GET", "/api/info").then((i) => {
  if (i && i.update) toast(i.update + " — run `kino update apply`");
}).catch(() => {});
