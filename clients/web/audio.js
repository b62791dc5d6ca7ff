// One AudioContext for both directions: the microphone goes through the capture worklet
// (16 kHz s16le frames out), agent audio goes through the playback worklet's ring buffer.

const CAPTURE_URL = new URL("./capture-worklet.js", import.meta.url);
const PLAYBACK_URL = new URL("./playback-worklet.js", import.meta.url);

export class AudioEngine {
  /**
   * @param {object} opts
   * @param {(pcm: ArrayBuffer, peak: number) => void} opts.onFrame  one 16 kHz s16le mic frame
   * @param {(stats: object) => void} opts.onPlaybackStats  the playback worklet's counters
   * @param {number} [opts.frameMs=20]  mic frame length
   * @param {boolean} [opts.processing=true]  browser echo cancellation / noise suppression / AGC
   */
  constructor({ onFrame, onPlaybackStats, frameMs = 20, processing = true }) {
    this.onFrame = onFrame;
    this.onPlaybackStats = onPlaybackStats;
    this.frameMs = frameMs;
    this.processing = processing;
    this.ctx = null;
    this.stream = null;
    this.capture = null;
    this.playback = null;
    this.outputRate = 24000;
    this.oddByte = null;
  }

  async start() {
    this.ctx = new AudioContext({ latencyHint: "interactive" });
    await Promise.all([this.ctx.audioWorklet.addModule(CAPTURE_URL), this.ctx.audioWorklet.addModule(PLAYBACK_URL)]);
    this.playback = new AudioWorkletNode(this.ctx, "voice-playback", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { sourceRate: this.outputRate },
    });
    this.playback.port.onmessage = (e) => this.onPlaybackStats(e.data);
    this.playback.connect(this.ctx.destination);

    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: this.processing,
        noiseSuppression: this.processing,
        autoGainControl: this.processing,
      },
    });
    const source = this.ctx.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(this.ctx, "voice-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { targetRate: 16000, frameMs: this.frameMs },
    });
    this.capture.port.onmessage = (e) => {
      if (e.data && e.data.type === "frame") this.onFrame(e.data.buffer, e.data.peak);
    };
    // the capture node writes silence; a muted path to the destination keeps it pulled by the graph
    const mute = this.ctx.createGain();
    mute.gain.value = 0;
    source.connect(this.capture).connect(mute).connect(this.ctx.destination);
    await this.ctx.resume();
    return { contextRate: this.ctx.sampleRate };
  }

  /** The server's output rate (from 0x08 ready); the playback ring is re-made at that rate. */
  setOutputRate(rate) {
    this.outputRate = rate;
    if (this.playback) this.playback.port.postMessage({ type: "rate", rate });
  }

  /**
   * Queues one 0x06 payload (PCM s16le at the output rate); the buffer is transferred. A payload
   * with an odd byte count keeps its last byte for the next one, so samples never shift.
   */
  play(pcm) {
    if (!this.playback) return;
    let bytes = new Uint8Array(pcm);
    if (this.oddByte !== null) {
      const joined = new Uint8Array(bytes.length + 1);
      joined[0] = this.oddByte;
      joined.set(bytes, 1);
      bytes = joined;
      this.oddByte = null;
    }
    if (bytes.length % 2 === 1) {
      this.oddByte = bytes[bytes.length - 1];
      bytes = bytes.slice(0, bytes.length - 1);
    }
    if (bytes.length === 0) return;
    const buffer = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
    this.playback.port.postMessage({ type: "pcm", buffer }, [buffer]);
  }

  /** 0x0B: drop everything buffered, now. */
  clear() {
    this.oddByte = null;
    if (this.playback) this.playback.port.postMessage({ type: "clear" });
  }

  async stop() {
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) await this.ctx.close();
    this.ctx = this.stream = this.capture = this.playback = null;
  }
}
