// Drives Kino's web app in real headless Chromium (Debian's /usr/bin/chromium) through
// playwright-core. Started by crates/kino/tests/webapp.rs against a running `kino demo`.
//
//   KINO_URL=http://127.0.0.1:PORT/ KINO_PHASE=main|restart KINO_ARTIFACTS=dir node run.mjs
//
// Phase "main": home, search, title pages (codec verdicts), play WebM (and MP4 where the
// browser says it can) past 2 s with no media error, subtitle track, seek to the middle and
// playback resumes, resume position kept, settings changed, hostile catalog text shown as
// text. Phase "restart" (after the app restarted on the same data folder): the settings and
// the resume position are still there. Screenshots of each page go to KINO_ARTIFACTS.
// Waits are bounded polls on page state; nothing asserts how long anything took.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const URL_ = process.env.KINO_URL;
const PHASE = process.env.KINO_PHASE || "main";
const OUT = process.env.KINO_ARTIFACTS || "target/test-artifacts/browser";
const EXE = process.env.CHROMIUM || "/usr/bin/chromium";
if (!URL_) throw new Error("KINO_URL is required");
fs.mkdirSync(OUT, { recursive: true });

const userDataDir = fs.mkdtempSync(path.join(process.env.TMPDIR || "/tmp", "kino-chromium-"));
const log = (...a) => console.log("[browser]", ...a);
function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  log("ok:", what);
}

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: EXE,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
    "--mute-audio"],
  viewport: { width: 1280, height: 860 },
});
const page = context.pages()[0] || (await context.newPage());
const consoleErrors = [];
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
page.on("pageerror", (e) => consoleErrors.push(String(e)));
// Nothing may be fetched from anywhere but the app itself.
const foreign = [];
page.on("request", (r) => { if (!r.url().startsWith(URL_) && !r.url().startsWith("data:")) foreign.push(r.url()); });

async function shot(name) {
  await page.screenshot({ path: path.join(OUT, name + ".png"), fullPage: false });
  log("screenshot", name);
}
async function go(hash) {
  await page.evaluate(() => { document.body.dataset.ready = "0"; });
  await page.goto(URL_ + hash);
  await page.waitForSelector('body[data-ready="1"]', { timeout: 30000 });
}
// A bounded poll of a page expression (page.evaluate, which the page's CSP does not block,
// unlike waitForFunction's polling); fails with the video's state when it never holds.
async function until(fn, arg, what, timeoutMs = 60000) {
  const rounds = Math.ceil(timeoutMs / 200);
  for (let i = 0; i < rounds; i++) {
    const ok = await page.evaluate(fn, arg).catch(() => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  const state = await page.evaluate(() => {
    const v = document.querySelector("video");
    return v ? { t: v.currentTime, rs: v.readyState, err: v.error && v.error.code, paused: v.paused, src: v.currentSrc } : null;
  }).catch(() => null);
  throw new Error("timed out waiting for " + what + " " + JSON.stringify(state));
}

async function demoKey() {
  return page.evaluate(async () => (await (await fetch("/api/titles")).json()).titles.find((t) => t.id === "test-card").key);
}

async function playAndCheck(key, id, stream, label) {
  await go(`#/play/${key}/${id}/${stream}`);
  await until(() => { const v = document.querySelector("#video"); return v && (v.error || v.currentTime > 2); }, null, label + " past 2 s");
  const err = await page.evaluate(() => document.querySelector("#video").error);
  check(err === null, label + ": no media error");
  check(await page.evaluate(() => document.querySelector("#video").currentTime > 2), label + ": currentTime passed 2 s");
}

try {
  await go("#/");
  const key = await demoKey();
  if (PHASE === "main") {
    // Home.
    await until(() => document.querySelectorAll("#grid .card").length >= 3, null, "home grid");
    await until(() => document.querySelectorAll("#genres .chip").length >= 3, null, "genre chips");
    await shot("home");
    // Hostile catalog text is shown as text, never run.
    const hostile = await page.evaluate(() => {
      const c = document.querySelector('[data-title-id="hostile-title"] .name');
      return { text: c && c.textContent, xss: window.kinoXss, scripts: document.querySelectorAll("#view script, #view img[src=x]").length };
    });
    check(hostile.text && hostile.text.startsWith("<script>"), "hostile title shown as text on home");
    check(hostile.xss === undefined && hostile.scripts === 0, "hostile title did not run or inject");

    // Genre filter.
    await page.click('#genres .chip[data-genre="Mystery"]');
    await until(() => { const c = document.querySelectorAll("#grid .card"); return c.length === 1 && c[0].dataset.titleId === "late-index"; }, null, "genre filter");
    await page.click('#genres .chip[data-genre=""]');

    // Search as you type.
    await page.fill("#search", "late ind");
    await until(() => { const c = document.querySelectorAll("#grid .card"); return c.length === 1 && c[0].dataset.titleId === "late-index"; }, null, "search results");
    await shot("search");
    await page.fill("#search", "");
    await until(() => document.querySelectorAll("#grid .card").length >= 3, null, "grid back");

    // Title page.
    await page.click('[data-title-id="test-card"]');
    await page.waitForSelector('body[data-ready="1"] #title-name');
    check((await page.textContent("#title-name")) === "Test Card", "title page shows the title");
    check((await page.getAttribute("#browser-verdict", "data-verdict")) === "yes", "WebM/VP9 plays in this browser");
    await until(() => !/looking/.test(document.querySelector("#peers-now").textContent), null, "peers now");
    check(/peer/.test(await page.textContent("#peers-now")), "peers available now shown");
    check((await page.inputValue("#stream-url")).startsWith(URL_ + "stream/"), "stream URL shown");
    await shot("title");

    // A title the browser cannot play says so before play.
    await go(`#/title/${key}/matroska-card`);
    const mkv = await page.getAttribute("#browser-verdict", "data-verdict");
    if (mkv === "no") {
      check(await page.isVisible("#codec-warning"), "Matroska title warns before play and offers mpv/VLC");
      check(await page.isDisabled("#play"), "play is disabled where the browser cannot decode");
    } else {
      log("note: this Chromium says it can play video/x-matroska");
    }
    await shot("title-matroska");

    // Hostile title page.
    await go(`#/title/${key}/hostile-title`);
    check((await page.textContent("#title-name")).includes("<img src=x"), "hostile title text on its page");
    check((await page.textContent("#synopsis")) === "<b>not bold</b> & <i>not italic</i>", "hostile synopsis as text");
    check(await page.evaluate(() => window.kinoXss === undefined), "no script ran");
    await shot("title-hostile");

    // Play WebM.
    await playAndCheck(key, "test-card", 0, "WebM");
    const tracks = await page.evaluate(() => {
      const v = document.querySelector("#video");
      const t = v.querySelector("track");
      return { n: v.textTracks.length, kind: v.textTracks[0] && v.textTracks[0].kind, ready: t && t.readyState };
    });
    check(tracks.n >= 1 && tracks.kind === "subtitles", "subtitle track exists");
    await until(() => document.querySelector("#video track").readyState === 2, null, "subtitles loaded");
    check(await page.evaluate(() => document.querySelector("#video").textTracks[0].cues.length > 0), "subtitle cues parsed by the browser");
    await until(() => /s$/.test((document.querySelector("#hud-buffered") || {}).textContent || ""), null, "buffering indicator");
    await shot("player");

    // Seek to the middle: playback resumes there.
    const mid = await page.evaluate(() => { const v = document.querySelector("#video"); const m = v.duration / 2; v.currentTime = m; return m; });
    await until((m) => { const v = document.querySelector("#video"); return v.error || v.currentTime > m + 1; }, mid, "playback after the seek");
    check(await page.evaluate(() => document.querySelector("#video").error === null), "no media error after seek");
    await shot("player-seeked");

    // Keyboard: space pauses; the position is saved on pause.
    await page.click("#view h1, #hud").catch(() => {});
    await page.keyboard.press("Space");
    await until(() => document.querySelector("#video").paused, null, "space pauses");
    const saved = await page.evaluate(() => document.querySelector("#video").currentTime);
    await until(async (s) => {
      const h = await (await fetch("/api/history")).json();
      return h.continue.some((c) => c.id === "test-card" && Math.abs(c.position - s) < 1);
    }, saved, "position saved");
    fs.writeFileSync(path.join(OUT, "saved-position.txt"), String(saved));

    // Continue watching on home; the title page offers resume; the player resumes.
    await go("#/");
    await until(() => !!document.querySelector('#continue-row [data-title-id="test-card"]'), null, "continue watching row");
    await shot("home-continue");
    await go(`#/title/${key}/test-card`);
    check(/Resume at/.test(await page.textContent("#play")), "title page offers resume");
    await page.click("#play");
    await until((s) => { const v = document.querySelector("#video"); return v && v.currentTime >= s - 1; }, saved, "player resumed at the saved position");
    check(await page.isVisible("#resume-note button"), "resume note with start over");

    // MP4/H.264 where the browser can.
    const mp4 = await page.evaluate(() => document.createElement("video").canPlayType('video/mp4; codecs="avc1.42E01E, mp4a.40.2"'));
    if (mp4) {
      await playAndCheck(key, "test-card", 1, "MP4/H.264");
      await playAndCheck(key, "late-index", 0, "MP4 with the index at the end");
    } else {
      log("note: this Chromium cannot play MP4/H.264 (canPlayType says no); skipped");
    }

    // Settings.
    await go("#/settings");
    await page.fill("#upload-limit", "123");
    await page.fill("#ratio-limit", "3.5");
    await page.click("#save-settings");
    await until(() => /Saved|in effect/.test(document.querySelector("#settings-status").textContent), null, "settings saved");
    await shot("settings");

    await go("#/sharing");
    await until(() => document.querySelectorAll("#sharing-table tbody tr[data-infohash]").length >= 1, null, "sharing rows");
    await shot("sharing");
    await go("#/publishers");
    await until(() => /Kino Demo Films/.test(document.querySelector("#publishers-table").textContent), null, "publisher listed");
    await shot("publishers");
  } else {
    await go("#/settings");
    check((await page.inputValue("#upload-limit")) === "123", "upload cap kept after restart");
    check((await page.inputValue("#ratio-limit")) === "3.5", "ratio kept after restart");
    check(/in effect/.test(await page.textContent("#settings-status")), "saved settings in effect after restart");
    await shot("settings-after-restart");
    await go("#/");
    await until(() => !!document.querySelector('#continue-row [data-title-id="test-card"]'), null, "continue watching after restart");
    await go(`#/title/${key}/test-card`);
    check(/Resume at/.test(await page.textContent("#play")), "resume position kept after restart");
  }
  check(foreign.length === 0, "no request left the app's origin " + JSON.stringify(foreign));
  const cspErrors = consoleErrors.filter((e) => /Content Security Policy|Refused/.test(e));
  check(cspErrors.length === 0, "no CSP violation " + JSON.stringify(cspErrors));
  log("PASS", PHASE);
} catch (e) {
  await shot("failure-" + PHASE).catch(() => {});
  console.error("[browser] FAIL:", e.message, "console errors:", JSON.stringify(consoleErrors.slice(0, 10)));
  process.exitCode = 1;
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
