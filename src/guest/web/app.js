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
  text(li, `${f.name} (${f.size} bytes) from ${f.sender} `);
  $("files").append(li);
}

// Media: filled in by the video and audio parts below.
function onBinary(_bytes) {}
function startMedia() {}
function stopMedia() {}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  join($("name").value.trim(), $("room").value.trim(), $("passcode").value);
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
});
$("mic").addEventListener("click", () => {
  state.mic = !state.mic;
  text($("mic"), state.mic ? "Mic on" : "Mic off");
  $("mic").setAttribute("aria-pressed", String(state.mic));
  send({ t: "media", mic: state.mic, camera: state.camera });
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
