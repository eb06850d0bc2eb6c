// Drives headless Debian chromium through the browser-guest page for
// tests/browser.rs. Usage:
//   node guest.mjs URL CHROMIUM [--video FILE.y4m] [--audio FILE.wav] [--upload FILE]
//                  [--seconds N] [--audio-only]
// (--audio-only skips the chat and download steps.)
// Prints one JSON object (the page's observations) on stdout and exits 0;
// any failure prints {"error": "..."} and exits 1.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { chromium } from "playwright-core";

const [url, executablePath, ...rest] = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : dflt;
};
const seconds = Number(opt("--seconds", "8"));
const args = [
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  "--autoplay-policy=no-user-gesture-required",
  "--no-sandbox",
];
if (opt("--video")) args.push(`--use-file-for-fake-video-capture=${opt("--video")}`);
if (opt("--audio")) args.push(`--use-file-for-fake-audio-capture=${opt("--audio")}`);

const log = (...m) => console.error("[guest.mjs]", ...m);
let browser;
try {
  browser = await chromium.launch({ executablePath, headless: true, args });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true });
  const page = await context.newPage();
  page.on("console", (m) => log("page:", m.text()));
  page.on("pageerror", (e) => log("page error:", e.message));
  const started = Date.now();
  await page.goto(url);
  await page.waitForSelector("#call-view:not([hidden])", { timeout: 10000 });
  const joinedMs = Date.now() - started;
  log(`joined after ${joinedMs} ms`);
  const audioOnly = rest.includes("--audio-only");
  let downloadMd5 = null, downloadName = null;
  if (!audioOnly) {
    // The test's bot greets the guest; the guest answers in the room and
    // privately.
    await page.waitForFunction(() => window.sapora.chats.some((c) => c.text === "hello guest"), null, { timeout: 10000 });
    await page.fill("#chat-text", "hello from the browser");
    await page.click("#chat-form button");
    await page.selectOption("#chat-to", "bot2");
    await page.fill("#chat-text", "psst bot2");
    await page.click("#chat-form button");
    // The test's bot offers a file: download it and hash what was saved.
    await page.waitForSelector("#files li button", { timeout: 15000 });
    const [download] = await Promise.all([
      page.waitForEvent("download", { timeout: 15000 }),
      page.click("#files li button"),
    ]);
    const saved = await download.path();
    downloadMd5 = createHash("md5").update(await readFile(saved)).digest("hex");
    downloadName = download.suggestedFilename();
  }
  // The guest shares a file of its own.
  if (opt("--upload")) {
    await page.setInputFiles("#upload-file", opt("--upload"));
    await page.click("#upload-form button");
    await page.waitForFunction(() => window.sapora.uploaded, null, { timeout: 15000 });
  }
  await page.waitForTimeout(seconds * 1000);
  const seen = await page.evaluate(() => ({
    members: [...document.querySelectorAll("#members li")].map((li) => li.dataset.name),
    chats: window.sapora.chats.map((c) => ({ from: c.from, to: c.to, text: c.text })),
    files: [...document.querySelectorAll("#files li")].map((li) => ({ id: li.dataset.id, md5: li.dataset.md5 })),
    media: window.sapora.media || null,
    firstFrameMs: window.sapora.firstFrameMs,
    uploaded: window.sapora.uploaded || null,
    screen: window.sapora.screen || null,
    audio: window.sapora.audio || null,
    upstream: window.sapora.upstream || null,
  }));
  console.log(JSON.stringify({ joinedMs, downloadMd5, downloadName, ...seen }));
  await browser.close();
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.stack || e) }));
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
