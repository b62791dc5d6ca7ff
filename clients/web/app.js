// The browser voice client: microphone → /v1/agent/stream → transcript, agent text, audio, waterfall.
//
// URL parameters: api_key (passed on to the WebSocket, since browsers cannot set headers), mode
// (agent|direct), voice, autostart=1 (start without a click; needs an autoplay policy that allows
// it), processing=0 (turn off echo cancellation / noise suppression / AGC), frame_ms (mic frame
// length, 20 by default), ws (a full ws:// URL to use instead of this page's host).
//
// Everything the page shows is also kept in `window.voiceState`, so tests can assert on facts;
// `window.voiceTap = (kind, arrayBuffer) => …` (kind "mic" or "tts") sees a copy of each audio frame.

import { AudioEngine } from "./audio.js";
import { FLAG_FINAL, FLAG_NEEDS_FOLLOWUP, FrameType, json, pack, text, unpack } from "./protocol.js";
import { drawWaterfall } from "./waterfall.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const RECONNECT_BASE_MS = 500;
const RECONNECT_MAX_MS = 10000;
const NO_RECONNECT_CODES = new Set([1008]); // wrong API key: retrying cannot help
const PRE_READY_MAX_FRAMES = 50; // mic audio kept while the session starts (1 s at 20 ms frames)

const state = {
  connected: false, // WebSocket open
  sessionReady: false, // 0x08 ready received for the current connection
  ready: null, // the last ready JSON
  status: "idle",
  outputRate: null,
  transcripts: [], // finals: {text, at}
  partial: "",
  partials: 0,
  agentText: "", // every agent word so far, all turns
  agentTurns: [], // {text, ack, interrupted}
  events: [], // 0x0A payloads
  errors: [], // 0x07 payloads
  waterfalls: [], // 0x09 payloads
  framesSent: 0, // 0x02 frames sent
  framesDropped: 0, // mic frames captured while not connected
  audioFramesReceived: 0, // 0x06 frames received
  audioBytesReceived: 0,
  framesPlayed: 0, // render quanta the playback worklet filled with agent audio
  samplesPlayed: 0, // agent samples the playback worklet consumed
  buffered: 0, // samples waiting in the playback ring
  playbackDrains: 0, // times the ring ran empty while playing: once per burst, more means gaps
  clearsReceived: 0, // 0x0B frames received
  clearsApplied: 0, // clears the playback worklet has carried out
  localClears: 0, // playback cut by the page itself: user speech over the tail of a finished turn
  lastClear: null, // {bufferedBefore, bufferedAfter} around the latest clear
  connects: 0,
  reconnects: 0,
  closes: [], // {code, reason}
  contextRate: null,
  micPeak: 0,
  micFrames: 0, // 16 kHz frames the capture worklet produced
};
window.voiceState = state;

let ws = null;
let engine = null;
let running = false;
let attempt = 0;
let reconnectTimer = null;
let currentAgent = null; // {turn, li}
let lastAgent = null; // the previous turn's {turn, li}: its audio may still play after its done
let preReady = []; // mic frames captured while connecting, sent once the session is ready
let turnOpen = false; // between a final transcript and its done: the server handles barge-in
let clearPending = null; // a 0x0B the worklet has not confirmed yet
let clearsRequested = 0; // clears posted to the worklet (0x0B and reconnects)

function clearPlayback() {
  if (!engine) return;
  clearsRequested++;
  engine.clear();
}

function setStatus(s, detail = "") {
  state.status = s;
  const pill = $("status");
  pill.dataset.state = s;
  pill.textContent = detail ? `${s}: ${detail}` : s;
}

function logEvent(kind, detail, isError = false) {
  const li = document.createElement("li");
  if (isError) li.className = "error";
  const time = new Date().toISOString().slice(11, 23);
  li.textContent = `${time} ${kind}${detail ? " " + detail : ""}`;
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 200) list.lastElementChild.remove();
}

function wsUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const here = `${proto}//${location.host}${location.pathname.replace(/[^/]*$/, "")}v1/agent/stream`;
  const base = new URL(params.get("ws") || here); // the page's own directory, so a proxy prefix works
  const key = params.get("api_key");
  if (key) base.searchParams.set("api_key", key);
  return base.toString();
}

function sessionConfig() {
  const config = { mode: $("mode").value };
  const voice = $("voice").value.trim();
  if (voice) config.voice = voice;
  return config;
}

// ------------------------------------------------------------------ conversation view
function addLine(kind, textContent) {
  const li = document.createElement("li");
  li.className = kind;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = kind === "user" ? "you" : "agent";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = textContent;
  li.append(who, body);
  const list = $("conversation");
  list.appendChild(li);
  list.scrollTop = list.scrollHeight;
  return li;
}

function agentTurn() {
  if (!currentAgent) {
    const turn = { text: "", ack: "", interrupted: false };
    state.agentTurns.push(turn);
    currentAgent = { turn, li: addLine("agent", "") };
  }
  return currentAgent;
}

function onTranscription(payload, flags) {
  const t = text(payload);
  if (flags & FLAG_FINAL) {
    state.transcripts.push({ text: t, at: Date.now() });
    state.partial = "";
    $("partial").textContent = "";
    addLine("user", t);
    currentAgent = null; // the next agent text answers this turn
    turnOpen = t.trim().length > 0;
  } else {
    state.partial = t;
    state.partials++;
    $("partial").textContent = t;
  }
}

function onLlmChunk(payload, flags) {
  const t = text(payload);
  const { turn, li } = agentTurn();
  const body = li.querySelector(".text");
  if (flags & FLAG_NEEDS_FOLLOWUP) {
    // a fast acknowledgment spoken while the real answer is on its way
    turn.ack += t;
    const ack = document.createElement("span");
    ack.className = "ack";
    ack.textContent = t;
    body.appendChild(ack);
  } else {
    turn.text += t;
    body.appendChild(document.createTextNode(t));
  }
  state.agentText += t;
}

function onEvent(payload) {
  const event = json(payload);
  state.events.push(event);
  const name = event.event || event.type || "event";
  if (name === "speech_start" && !turnOpen && state.buffered > 0) {
    // Redundant since the server keeps a playback clock (it sends 0x0B + `interrupted` after `done`
    // too, while our tail plays); kept as a harmless fallback for audio buffered past its estimate.
    state.localClears++;
    clearPlayback();
    if (currentAgent) currentAgent.li.classList.add("interrupted");
  }
  if (name === "interrupted") {
    const cut = currentAgent || (event.after_done ? lastAgent : null);
    if (cut) {
      cut.turn.interrupted = true;
      cut.li.classList.add("interrupted");
    }
  }
  const { event: _omit, ...rest } = event;
  logEvent(name, Object.keys(rest).length ? JSON.stringify(rest) : "");
}

function onError(payload) {
  const error = json(payload);
  state.errors.push(error);
  logEvent("error", `${error.code || ""} ${error.message || ""}`.trim(), true);
}

// which models run, from the orchestrator's ready: ASR model, TTS engine and model, the LLM
function showModels(ready) {
  const parts = [];
  if (ready.asr_model) parts.push(`ASR: ${ready.asr_model}`);
  if (ready.tts_engine || ready.tts_model) parts.push(`TTS: ${ready.tts_model || ready.tts_engine}`);
  if (ready.llm) parts.push(`LLM: ${ready.llm}`);
  $("models").textContent = parts.join(" · ");
}

function onReady(payload) {
  const ready = json(payload);
  state.ready = ready;
  state.sessionReady = true;
  attempt = 0;
  const rate = ready.output_sample_rate || ready.sample_rate || (ready.output && ready.output.sample_rate);
  if (rate) {
    state.outputRate = rate;
    if (engine) engine.setOutputRate(rate);
  }
  setStatus("connected", ready.mode || "");
  showModels(ready);
  logEvent("ready", JSON.stringify(ready));
  for (const pcm of preReady) {
    ws.send(pack(FrameType.AUDIO_CHUNK, pcm));
    state.framesSent++;
  }
  preReady = [];
}

function onDone(payload) {
  const done = json(payload);
  state.waterfalls.push(done);
  turnOpen = false;
  drawWaterfall($("latency"), done, state.waterfalls.length);
  lastAgent = currentAgent || lastAgent;
  currentAgent = null;
}

function onClear() {
  state.clearsReceived++;
  clearPlayback();
  clearPending = { bufferedBefore: state.buffered, target: clearsRequested, at: performance.now() };
  logEvent("clear", "playback cleared");
}

function onFrame(buffer) {
  const frame = unpack(buffer);
  if (!frame) return logEvent("bad frame", `${buffer.byteLength} bytes`, true);
  switch (frame.type) {
    case FrameType.TRANSCRIPTION:
      return onTranscription(frame.payload, frame.flags);
    case FrameType.LLM_CHUNK:
      return onLlmChunk(frame.payload, frame.flags);
    case FrameType.TTS_AUDIO:
      state.audioFramesReceived++;
      state.audioBytesReceived += frame.payload.byteLength;
      if (typeof window.voiceTap === "function") window.voiceTap("tts", frame.payload.slice(0));
      if (engine) engine.play(frame.payload);
      return;
    case FrameType.ERROR:
      return onError(frame.payload);
    case FrameType.READY:
      return onReady(frame.payload);
    case FrameType.DONE:
      return onDone(frame.payload);
    case FrameType.EVENT:
      return onEvent(frame.payload);
    case FrameType.CLEAR:
      return onClear();
    default:
      return logEvent("unknown frame", `0x${frame.type.toString(16)}`, true);
  }
}

// ------------------------------------------------------------------ audio
function onMicFrame(pcm, peak) {
  state.micPeak = peak;
  state.micFrames++;
  if (typeof window.voiceTap === "function") window.voiceTap("mic", pcm.slice(0));
  $("mic-level").style.width = `${Math.min(100, Math.round(Math.sqrt(peak) * 100))}%`;
  if (ws && ws.readyState === WebSocket.OPEN && state.sessionReady) {
    ws.send(pack(FrameType.AUDIO_CHUNK, pcm));
    state.framesSent++;
  } else if (ws && ws.readyState === WebSocket.OPEN) {
    // the session is starting: keep the last second so the first words are not lost
    preReady.push(pcm);
    if (preReady.length > PRE_READY_MAX_FRAMES) {
      preReady.shift();
      state.framesDropped++;
    }
  } else {
    state.framesDropped++;
  }
}

function onPlaybackStats(stats) {
  if (stats.type !== "stats") return;
  state.buffered = stats.buffered;
  state.framesPlayed = stats.quantaPlayed;
  state.samplesPlayed = stats.samplesPlayed;
  state.clearsApplied = stats.clears;
  state.playbackDrains = stats.drained;
  if (clearPending && stats.clears >= clearPending.target) {
    const { bufferedBefore, at } = clearPending;
    state.lastClear = {
      bufferedBefore, // as last reported before the clear
      cleared: stats.lastCleared, // what the worklet actually threw away
      bufferedAfter: stats.buffered,
      ms: performance.now() - at,
    };
    clearPending = null;
  }
  $("buffered").textContent = `${Math.round(stats.bufferedMs)} ms`;
}

// ------------------------------------------------------------------ connection
function connect() {
  reconnectTimer = null;
  if (!running) return;
  setStatus(state.connects ? "reconnecting" : "connecting");
  const socket = new WebSocket(wsUrl());
  socket.binaryType = "arraybuffer";
  ws = socket;
  socket.onopen = () => {
    state.connected = true;
    state.sessionReady = false;
    state.connects++;
    if (state.connects > 1) state.reconnects++;
    preReady = [];
    turnOpen = false;
    clearPlayback(); // audio from a dropped connection is stale
    socket.send(pack(FrameType.AUDIO_START, sessionConfig()));
  };
  socket.onmessage = (e) => {
    if (e.data instanceof ArrayBuffer) onFrame(e.data);
    else logEvent("text frame", String(e.data).slice(0, 200), true);
  };
  socket.onclose = (e) => {
    if (ws === socket) ws = null;
    state.connected = false;
    state.sessionReady = false;
    state.closes.push({ code: e.code, reason: e.reason });
    currentAgent = null;
    if (!running) return setStatus("idle");
    if (NO_RECONNECT_CODES.has(e.code)) {
      running = false;
      setStatus("error", e.reason || "unauthorized (check ?api_key=)");
      logEvent("closed", `${e.code} ${e.reason}`, true);
      return updateButtons();
    }
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** attempt) * (0.8 + 0.4 * Math.random());
    attempt++;
    setStatus("reconnecting", `in ${(delay / 1000).toFixed(1)} s`);
    logEvent("closed", `${e.code} ${e.reason || ""}; retrying in ${Math.round(delay)} ms`, e.code !== 1000);
    reconnectTimer = setTimeout(connect, delay);
  };
}

function updateButtons() {
  $("start").disabled = running;
  $("stop").disabled = !running;
  $("end-turn").disabled = !running;
  $("mode").disabled = running;
  $("voice").disabled = running;
}

async function start() {
  if (running) return;
  running = true;
  updateButtons();
  try {
    engine = new AudioEngine({
      onFrame: onMicFrame,
      onPlaybackStats,
      frameMs: Number(params.get("frame_ms")) || 20,
      processing: params.get("processing") !== "0",
    });
    if (state.outputRate) engine.setOutputRate(state.outputRate);
    const { contextRate } = await engine.start();
    state.contextRate = contextRate;
    if (state.outputRate) engine.setOutputRate(state.outputRate);
  } catch (err) {
    running = false;
    updateButtons();
    setStatus("error", `audio: ${err.message}`);
    logEvent("audio error", err.message, true);
    return;
  }
  attempt = 0;
  connect();
}

async function stop() {
  running = false;
  clearTimeout(reconnectTimer);
  if (ws) ws.close(1000, "user stopped");
  if (engine) await engine.stop();
  engine = null;
  updateButtons();
  setStatus("idle");
}

function endTurn() {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(pack(FrameType.AUDIO_END));
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("end-turn").addEventListener("click", endTurn);
if (params.get("mode")) $("mode").value = params.get("mode");
if (params.get("voice")) $("voice").value = params.get("voice");
window.voiceClient = { start, stop, endTurn };
if (params.get("autostart") === "1") start();
