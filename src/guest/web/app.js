// Sapora's browser guest client. Plain JS, no build step; served by the
// host (src/guest). The wire layout is docs/protocol.md, "Browser guests".
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null,
  name: "",
  room: "",
  members: [],
  tiles: new Map(), // sender name -> { canvas, label, frames }
  speakerView: false,
  mic: true,
  camera: true,
};
// For tests and debugging: what the page has seen.
window.sapora = { state, chats: [], firstFrameMs: null, started: performance.now() };

function text(el, value) { el.textContent = value; return el; }

function showError(message) {
  text($("join-error"), message);
  $("join-view").hidden = false;
  $("call-view").hidden = true;
}

function notice(message) { text($("notice"), message); }

function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
}

function join(name, room, passcode) {
  state.name = name;
  state.room = room;
  text($("join-error"), "");
  $("join").disabled = true;
  const ws = new WebSocket(`wss://${location.host}/guest`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onopen = () => send({ t: "join", name, room, passcode: passcode || null });
  ws.onmessage = (e) => {
    if (typeof e.data === "string") onMessage(JSON.parse(e.data));
    else onBinary(new Uint8Array(e.data));
  };
  ws.onclose = () => {
    $("join").disabled = false;
    if (!$("call-view").hidden) showError("You left the meeting (or the host ended it).");
    stopMedia();
  };
  ws.onerror = () => showError("Cannot reach the host. Is the meeting still running?");
}

function onMessage(msg) {
  switch (msg.t) {
    case "joined":
      $("join-view").hidden = true;
      $("call-view").hidden = false;
      text($("title"), `${msg.host} · room ${msg.room} · you are ${msg.name}`);
      state.name = msg.name;
      setMembers(msg.members);
      $("chat").replaceChildren();
      for (const c of msg.history) addChat(c);
      startMedia();
      break;
    case "refused":
      showError(`The host refused: ${msg.reason}`);
      break;
    case "members":
      setMembers(msg.members);
      break;
    case "presence":
      notice(`${msg.name} ${msg.joined ? "joined" : "left"}`);
      break;
    case "chat":
      addChat(msg);
      break;
    case "chat_failed":
      notice(`Not delivered: ${msg.reason}`);
      break;
    case "file":
      addFile(msg);
      break;
    case "download_failed": {
      const d = downloads.get(msg.id);
      if (d) text(d.button, "Download failed");
      downloads.delete(msg.id);
      notice(`Download failed: ${msg.reason}`);
      break;
    }
    case "uploaded":
      window.sapora.uploaded = msg;
      notice(msg.error ? `Not shared: ${msg.error}` : `Shared ${msg.name}`);
      break;
    case "screen":
      screenStats.presenter = msg.presenter;
      $("screen-box").hidden = !msg.presenter;
      if (msg.presenter) notice(`${msg.presenter} is sharing their screen`);
      break;
    case "notice":
      notice(msg.text);
      break;
    case "ended":
      notice(`Ended: ${msg.reason}`);
      break;
  }
}

function setMembers(members) {
  state.members = members;
  const list = $("members");
  list.replaceChildren();
  const to = $("chat-to");
  const chosen = to.value;
  to.replaceChildren(text(document.createElement("option"), "Everyone"));
  to.firstChild.value = "";
  for (const m of members) {
    const li = document.createElement("li");
    const flags = [m.mic ? "🎤" : "", m.camera ? "📷" : "", m.screen ? "🖥" : ""].join("");
    text(li, `${m.name}${m.name === state.name ? " (you)" : ""} ${flags}`);
    li.dataset.name = m.name;
    list.append(li);
    if (m.name !== state.name) {
      const opt = text(document.createElement("option"), m.name);
      opt.value = m.name;
      to.append(opt);
    }
  }
  to.value = chosen;
  if (to.value !== chosen) to.value = "";
}

function addChat(c) {
  window.sapora.chats.push(c);
  const li = document.createElement("li");
  const who = c.to ? `${c.from} → ${c.to}` : c.from;
  text(li, `${who}: ${c.text}`);
  if (c.to) li.className = "private";
  $("chat").append(li);
  li.scrollIntoView({ block: "end" });
}

function addFile(f) {
  const li = document.createElement("li");
  li.dataset.id = String(f.id);
  li.dataset.md5 = f.md5;
  text(li, `${f.name} (${f.size} bytes) from ${f.sender}${f.to ? " (to you)" : ""} `);
  const button = text(document.createElement("button"), "Download");
  button.addEventListener("click", () => {
    if (downloads.has(f.id)) return;
    downloads.set(f.id, { name: f.name, size: f.size, parts: [], received: 0, button });
    text(button, "Downloading…");
    send({ t: "download", id: f.id });
  });
  li.append(button);
  $("files").append(li);
}

// Files arrive as pieces ([0x43][id u64][offset u64][bytes]); an empty piece
// ends the file, which is then saved through an <a download>.
const downloads = new Map();
function onFilePiece(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const id = Number(view.getBigUint64(1));
  const d = downloads.get(id);
  if (!d) return;
  const data = bytes.slice(17);
  if (data.length > 0) {
    d.parts.push(data);
    d.received += data.length;
    text(d.button, `Downloading… ${Math.floor((100 * d.received) / Math.max(d.size, 1))}%`);
    return;
  }
  downloads.delete(id);
  const url = URL.createObjectURL(new Blob(d.parts));
  const a = document.createElement("a");
  a.href = url;
  a.download = d.name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  text(d.button, "Downloaded");
}

// ---- Media -----------------------------------------------------------
// Binary messages: docs/protocol.md, "Browser guests".
const KIND_VIDEO = 0x40, KIND_PCM = 0x41, KIND_OPUS = 0x42, KIND_FILE = 0x43;
const FPS = 15;
const media = { stream: null, timer: null, frameId: 0, frames: {}, audio: null, encoder: null, encoding: 0 };
window.sapora.media = media.frames;
// The guest's own camera: captures sent, ticks skipped because two were
// being encoded or the socket had more than 512 KiB queued, failed encodes,
// and which encoder ran ("worker" or "canvas").
const upstream = { sent: 0, busy: 0, backlog: 0, errors: 0, encoder: null };
window.sapora.upstream = upstream;

// The frame counter of Sapora's test pattern (src/media/video/pattern.rs,
// read_counter): two strips of 16 cells, the bottom one the complement of
// the top one; null unless both read cleanly (a whole frame). Only the two
// rows through the strips' middles are read back from the canvas (2 × w
// pixels, not the whole picture), so this check costs the page little.
function readCounter(ctx, w, h) {
  if (w < 32 || h < 20) return null;
  const cellW = Math.floor(w / 16), cellH = Math.max(Math.floor(h / 20), 2);
  const read = (y) => {
    const row = ctx.getImageData(0, y, w, 1).data;
    let v = 0;
    for (let bit = 0; bit < 16; bit++) {
      const i = (bit * cellW + Math.floor(cellW / 2)) * 4;
      const l = Math.floor((row[i] + row[i + 1] + row[i + 2]) / 3);
      if (l > 70 && l < 185) return null;
      v = (v << 1) | (l >= 185 ? 1 : 0);
    }
    return v;
  };
  const top = read(Math.floor(cellH / 2));
  if (top === null) return null;
  const bottom = read(h - cellH + Math.floor(cellH / 2));
  return bottom !== null && ((~top) & 0xffff) === bottom ? top : null;
}

// Per sender: frames received and drawn (whole ones with their counters),
// read by tests/browser.rs.
function statOf(name) {
  return (media.frames[name] ||= { received: 0, frames: 0, whole: 0, counters: [], first: 0, last: 0 });
}

function tileFor(sender, name) {
  let tile = state.tiles.get(sender);
  if (!tile) {
    const div = document.createElement("div");
    div.className = "tile";
    const canvas = document.createElement("canvas");
    const label = document.createElement("span");
    div.append(canvas, label);
    $("videos").append(div);
    tile = { div, canvas, label, decoding: false, next: null, ready: null };
    state.tiles.set(sender, tile);
    sendWants();
  }
  text(tile.label, name || `#${sender}`);
  return tile;
}

// Per tile a small pipeline, newest wins at every step: at most one frame
// decoding (createImageBitmap: off the main thread) and one decoded picture
// waiting for the next animation frame, where every waiting picture is
// painted at once. Frames that arrive meanwhile replace `tile.next`; a
// hidden page (no animation frames) decodes nothing more.
async function decodeNext(tile) {
  const f = tile.next;
  tile.next = null;
  tile.decoding = true;
  try {
    const bitmap = await createImageBitmap(new Blob([f.jpeg], { type: "image/jpeg" }));
    tile.ready = { bitmap, f };
    paintSoon();
  } catch (e) {
    console.log(`frame not decoded: ${e}`);
    tile.decoding = false;
    if (tile.next) decodeNext(tile);
  }
}

let paintScheduled = false;
function paintSoon() {
  if (paintScheduled) return;
  paintScheduled = true;
  requestAnimationFrame(paintReady);
}

function paintReady() {
  paintScheduled = false;
  for (const tile of state.tiles.values()) {
    if (!tile.ready) continue;
    const { bitmap, f } = tile.ready;
    tile.ready = null;
    paint(tile, bitmap, f);
    tile.decoding = false;
    if (tile.next) decodeNext(tile);
  }
}

function paint(tile, bitmap, f) {
  const c = tile.canvas;
  if (c.width !== bitmap.width || c.height !== bitmap.height) {
    c.width = bitmap.width;
    c.height = bitmap.height;
  }
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const now = performance.now();
  if (window.sapora.firstFrameMs === null) window.sapora.firstFrameMs = now;
  const counter = readCounter(ctx, c.width, c.height);
  const stat = statOf(f.name);
  if (stat.frames === 0) stat.first = now;
  stat.frames++;
  stat.last = now;
  if (counter !== null) {
    stat.whole++;
    stat.counters.push(counter);
    if (stat.counters.length > 50) stat.counters.shift();
  }
}

function onVideo(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const layer = bytes[1];
  const sender = view.getUint32(2);
  const frameId = view.getUint32(6);
  const nameLen = bytes[10];
  const name = new TextDecoder().decode(bytes.subarray(11, 11 + nameLen));
  const jpeg = bytes.subarray(11 + nameLen);
  const tile = tileFor(sender, name);
  const stat = statOf(name);
  stat.received++;
  tile.next = { sender, name, layer, frameId, jpeg };
  if (!tile.decoding) decodeNext(tile);
}

function onBinary(bytes) {
  if (bytes[0] === KIND_VIDEO) onVideo(bytes);
  else if (bytes[0] === KIND_PCM && media.audio) media.audio.play(bytes);
  else if (bytes[0] === KIND_FILE) onFilePiece(bytes);
  else if (bytes[0] === KIND_SCREEN) onScreen(bytes);
}

// The shared screen: [0x45][frame u32][width u16][height u16][JPEG], the
// newest picture only.
const KIND_SCREEN = 0x45;
const screenStats = { pictures: 0, width: 0, height: 0, presenter: null };
window.sapora.screen = screenStats;
function onScreen(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  screenStats.pictures++;
  screenStats.width = view.getUint16(5);
  screenStats.height = view.getUint16(7);
  const img = $("screen");
  const old = img.src;
  img.src = URL.createObjectURL(new Blob([bytes.slice(9)], { type: "image/jpeg" }));
  if (old) URL.revokeObjectURL(old);
  $("screen-box").hidden = false;
}

// Which senders this layout shows large: in speaker view the first tile.
function sendWants() {
  const full = state.speakerView ? [...state.tiles.keys()].slice(0, 1) : [];
  send({ t: "video", default: "thumb", full });
}

function blobOf(canvas, quality) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
}

// The camera's JPEG encoder: encode(video) resolves to [full, thumb]
// (Uint8Array JPEGs, full and half size). A worker (encoder.js, which says
// why) where the browser has OffscreenCanvas; the page's own canvas.toBlob
// otherwise. A worker that fails hands over to the canvases.
function makeEncoder() {
  const canvases = () => {
    const pairs = [0, 1].map(() => ({ full: document.createElement("canvas"), thumb: document.createElement("canvas"), busy: false }));
    return async (video) => {
      const pair = pairs.find((c) => !c.busy);
      pair.busy = true;
      try {
        const { full, thumb } = pair;
        const w = video.videoWidth, h = video.videoHeight;
        if (full.width !== w || full.height !== h) { full.width = w; full.height = h; thumb.width = w >> 1; thumb.height = h >> 1; }
        full.getContext("2d").drawImage(video, 0, 0, w, h);
        thumb.getContext("2d").drawImage(video, 0, 0, thumb.width, thumb.height);
        const blobs = await Promise.all([blobOf(full, 0.7), blobOf(thumb, 0.6)]);
        return Promise.all(blobs.map(async (b) => new Uint8Array(await b.arrayBuffer())));
      } finally {
        pair.busy = false;
      }
    };
  };
  const encoder = { kind: "canvas", encode: canvases(), close() {} };
  if (typeof OffscreenCanvas !== "function" || typeof createImageBitmap !== "function") return encoder;
  let worker;
  try {
    worker = new Worker("/encoder.js");
  } catch (e) {
    return encoder;
  }
  const waiting = new Map();
  let next = 0;
  const fail = (why) => {
    upstream.workerError = String(why);
    encoder.kind = "canvas";
    encoder.encode = canvases();
    worker.terminate();
    for (const p of waiting.values()) p.reject(new Error(why));
    waiting.clear();
  };
  worker.onerror = (e) => fail(e.message || "the encoder worker failed");
  worker.onmessage = (e) => {
    const p = waiting.get(e.data.id);
    waiting.delete(e.data.id);
    if (!p) return;
    if (e.data.error) p.reject(new Error(e.data.error));
    else p.resolve([new Uint8Array(e.data.full), new Uint8Array(e.data.thumb)]);
  };
  encoder.kind = "worker";
  encoder.encode = async (video) => {
    const bitmap = await createImageBitmap(video);
    const id = next++;
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      worker.postMessage({ bitmap, id }, [bitmap]);
    });
  };
  encoder.close = () => worker.terminate();
  return encoder;
}

// When encoding or the socket falls behind, captures are skipped, not
// queued: at most two frames are being encoded at once.
async function captureFrame(video) {
  if (!state.camera || video.videoWidth === 0) return;
  if (state.ws.bufferedAmount > 512 * 1024) { upstream.backlog++; return; }
  if (media.encoding >= 2) { upstream.busy++; return; }
  media.encoding++;
  try {
    const id = media.frameId++ >>> 0;
    const layers = await media.encoder.encode(video);
    upstream.encoder = media.encoder.kind;
    layers.forEach((jpeg, layer) => {
      const msg = new Uint8Array(6 + jpeg.length);
      msg[0] = KIND_VIDEO;
      msg[1] = layer;
      new DataView(msg.buffer).setUint32(2, id);
      msg.set(jpeg, 6);
      state.ws.send(msg);
    });
    upstream.sent++;
  } catch (e) {
    upstream.errors++;
  } finally {
    media.encoding--;
  }
}

async function startMedia() {
  send({ t: "media", mic: state.mic, camera: state.camera });
  sendWants();
  try {
    media.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: 640, height: 480, frameRate: FPS },
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
  } catch (e) {
    notice(`No camera or microphone: ${e.message}. You can still watch, listen and chat.`);
    startAudio(null);
    return;
  }
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = media.stream;
  await video.play().catch(() => {});
  if (!media.encoder) media.encoder = makeEncoder();
  media.timer = setInterval(() => captureFrame(video), 1000 / FPS);
  startAudio(media.stream);
}

function stopMedia() {
  if (media.timer) clearInterval(media.timer);
  media.timer = null;
  if (media.stream) for (const t of media.stream.getTracks()) t.stop();
  media.stream = null;
  if (media.audio) media.audio.stop();
  media.audio = null;
}

// Audio: the microphone (with the browser's echo cancellation and noise
// suppression) up as 16-bit PCM, 20 ms per message; the mix down, played
// from an AudioWorklet.
const audioStats = { codec: null, sentFrames: 0, receivedFrames: 0, playedRmsMax: 0, loudReports: 0 };
window.sapora.audio = audioStats;

// Opus through WebCodecs where the browser has it (20 ms packets, sent as
// [0x42][packet]); null otherwise, and the page sends 16-bit PCM. `?pcm=1`
// forces PCM.
async function opusEncoder() {
  if (typeof AudioEncoder === "undefined" || new URLSearchParams(location.search).has("pcm")) return null;
  const config = {
    codec: "opus", sampleRate: 48000, numberOfChannels: 1, bitrate: 48000,
    opus: { frameDuration: 20000 },
  };
  try {
    if (!(await AudioEncoder.isConfigSupported(config)).supported) return null;
    const encoder = new AudioEncoder({
      output: (chunk) => {
        const msg = new Uint8Array(1 + chunk.byteLength);
        msg[0] = KIND_OPUS;
        chunk.copyTo(msg.subarray(1));
        state.ws.send(msg);
        audioStats.sentFrames++;
      },
      error: (e) => console.log(`Opus encoder: ${e.message}`),
    });
    encoder.configure(config);
    return encoder;
  } catch (e) {
    console.log(`no Opus encoder: ${e}`);
    return null;
  }
}

async function startAudio(stream) {
  const ctx = new AudioContext({ sampleRate: 48000, latencyHint: "interactive" });
  await ctx.audioWorklet.addModule("/worklet.js");
  const player = new AudioWorkletNode(ctx, "sapora-player", { numberOfInputs: 0, outputChannelCount: [1] });
  player.connect(ctx.destination);
  player.port.onmessage = (e) => {
    audioStats.playedRmsMax = Math.max(audioStats.playedRmsMax, e.data);
    if (e.data > 0.01) audioStats.loudReports++;
  };
  const pending = new Float32Array(960);
  let filled = 0;
  const opus = await opusEncoder();
  audioStats.codec = opus ? "opus" : "pcm";
  let timestamp = 0;
  const sendFrame = () => {
    if (state.ws.bufferedAmount >= 256 * 1024) return;
    if (opus) {
      opus.encode(new AudioData({
        format: "f32", sampleRate: 48000, numberOfFrames: 960, numberOfChannels: 1,
        timestamp, data: pending.slice(0),
      }));
      timestamp += 20000;
      return;
    }
    const pcm = new Int16Array(pending.length);
    for (let i = 0; i < pcm.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(pending[i] * 32767)));
    const msg = new Uint8Array(1 + 2 * pcm.length);
    msg[0] = KIND_PCM;
    msg.set(new Uint8Array(pcm.buffer), 1);
    state.ws.send(msg);
    audioStats.sentFrames++;
  };
  if (stream && stream.getAudioTracks().length) {
    const capture = new AudioWorkletNode(ctx, "sapora-capture", { numberOfOutputs: 0 });
    ctx.createMediaStreamSource(stream).connect(capture);
    capture.port.onmessage = (e) => {
      if (!state.mic) return;
      for (const x of e.data) {
        pending[filled++] = x;
        if (filled === pending.length) {
          sendFrame();
          filled = 0;
        }
      }
    };
  }
  media.audio = {
    play(bytes) {
      audioStats.receivedFrames++;
      const pcm = new Int16Array(bytes.slice(1).buffer);
      const f32 = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) f32[i] = pcm[i] / 32768;
      player.port.postMessage(f32, [f32.buffer]);
    },
    stop() { ctx.close(); },
  };
  if (ctx.state !== "running") {
    ctx.resume();
    document.addEventListener("click", () => ctx.resume(), { once: true });
  }
}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  join($("name").value.trim(), $("room").value.trim(), $("passcode").value);
});
// Sharing a file: upload_start, its bytes in 64 KiB pieces ([0x44][bytes],
// paced by the socket's buffer), upload_end; to the chat's chosen recipient.
const KIND_UPLOAD = 0x44;
$("upload-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("upload-file").files[0];
  if (!file || !state.ws) return;
  send({ t: "upload_start", name: file.name, size: file.size, to: $("chat-to").value || null });
  for (let offset = 0; offset < file.size; offset += 65536) {
    while (state.ws.bufferedAmount > 1024 * 1024) await new Promise((r) => setTimeout(r, 20));
    const bytes = new Uint8Array(await file.slice(offset, offset + 65536).arrayBuffer());
    const msg = new Uint8Array(1 + bytes.length);
    msg[0] = KIND_UPLOAD;
    msg.set(bytes, 1);
    state.ws.send(msg);
    notice(`Sharing ${file.name}: ${Math.floor((100 * (offset + bytes.length)) / file.size)}%`);
  }
  send({ t: "upload_end" });
});
$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("chat-text");
  if (!input.value) return;
  const to = $("chat-to").value || null;
  send({ t: "chat", to, text: input.value });
  // The host does not echo our own lines back; show them here.
  addChat({ from: state.name, to, text: input.value });
  input.value = "";
});
$("leave").addEventListener("click", () => {
  send({ t: "leave" });
  state.ws && state.ws.close();
});
$("layout").addEventListener("click", () => {
  state.speakerView = !state.speakerView;
  $("videos").className = state.speakerView ? "grid speaker" : "grid";
  text($("layout"), state.speakerView ? "Grid view" : "Speaker view");
  sendWants();
});
$("mic").addEventListener("click", () => {
  state.mic = !state.mic;
  text($("mic"), state.mic ? "Mic on" : "Mic off");
  $("mic").setAttribute("aria-pressed", String(state.mic));
  send({ t: "media", mic: state.mic, camera: state.camera });
  if (media.stream) for (const t of media.stream.getAudioTracks()) t.enabled = state.mic;
});
$("camera").addEventListener("click", () => {
  state.camera = !state.camera;
  text($("camera"), state.camera ? "Camera on" : "Camera off");
  $("camera").setAttribute("aria-pressed", String(state.camera));
  send({ t: "media", mic: state.mic, camera: state.camera });
});

// ?room=R&name=N fills the form and joins.
(() => {
  const q = new URLSearchParams(location.search);
  if (q.has("room")) $("room").value = q.get("room");
  if (q.has("name")) $("name").value = q.get("name");
  if (q.has("passcode")) $("passcode").value = q.get("passcode");
  if (q.get("name")) join($("name").value.trim(), $("room").value.trim(), $("passcode").value);
})();
