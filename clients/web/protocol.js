// The agent stream's binary framing, mirrored from services/common/protocol/agent.py:
// every WebSocket message, both ways, is `[type u8][flags u8][payload]`.

export const FrameType = Object.freeze({
  AUDIO_START: 0x01, // client → server; payload: optional JSON session config
  AUDIO_CHUNK: 0x02, // client → server; PCM s16le 16 kHz mono
  AUDIO_END: 0x03, // client → server; ends the user's turn now
  TRANSCRIPTION: 0x04, // server → client; UTF-8; bit0 = final
  LLM_CHUNK: 0x05, // server → client; UTF-8
  TTS_AUDIO: 0x06, // server → client; PCM s16le mono at the session's output rate
  ERROR: 0x07, // server → client; UTF-8 JSON {code, message, fatal}
  READY: 0x08, // server → client; JSON
  DONE: 0x09, // server → client; JSON: the turn's latency waterfall
  EVENT: 0x0a, // server → client; JSON {"event": name, ...}
  CLEAR: 0x0b, // server → client; stop playback now
});

export const FLAG_FINAL = 0x01;
export const FLAG_NEEDS_FOLLOWUP = 0x02;

export const WATERFALL_STAGES = [
  "speech_end",
  "asr_final",
  "llm_first_token",
  "tts_first_audio",
  "first_audio_sent",
  "done",
];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One frame: payload may be an ArrayBuffer/typed array (raw), a string (UTF-8) or an object (JSON). */
export function pack(type, payload = null, flags = 0) {
  let body;
  if (payload === null || payload === undefined) body = new Uint8Array(0);
  else if (payload instanceof ArrayBuffer) body = new Uint8Array(payload);
  else if (ArrayBuffer.isView(payload)) body = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  else if (typeof payload === "string") body = encoder.encode(payload);
  else body = encoder.encode(JSON.stringify(payload));
  const frame = new Uint8Array(2 + body.length);
  frame[0] = type;
  frame[1] = flags & 0xff;
  frame.set(body, 2);
  return frame.buffer;
}

/** Splits a received ArrayBuffer into {type, flags, payload (ArrayBuffer)}; null when too short. */
export function unpack(buffer) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < 2) return null;
  const head = new Uint8Array(buffer, 0, 2);
  return { type: head[0], flags: head[1], payload: buffer.slice(2) };
}

export function text(payload) {
  return decoder.decode(payload);
}

/** JSON payloads; a payload that is not JSON comes back as {message: text} so nothing is lost. */
export function json(payload) {
  const s = text(payload);
  if (!s) return {};
  try {
    return JSON.parse(s);
  } catch {
    return { message: s };
  }
}
