// Microphone capture on the audio rendering thread.
//
// Why a worklet: ScriptProcessorNode is deprecated and runs on the main thread, where a busy page
// drops audio. Here each 128-sample render quantum is mixed down to mono, resampled from the
// context's rate (usually 48 kHz) to 16 kHz, converted to PCM s16le and handed to the page in
// fixed frames (20 ms by default) that go out unchanged as 0x02 audio_chunk frames.
//
// Resampling: downsampling uses area averaging (each output sample is the mean of the input span
// it covers, fractional edges weighted), a box anti-alias filter that handles any ratio, e.g.
// 44.1 kHz -> 16 kHz, without state beyond one partial bin. Upsampling (a context below 16 kHz,
// rare) interpolates linearly.

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.frameSamples = Math.max(1, Math.round((this.targetRate * (opts.frameMs || 20)) / 1000));
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.frame = new Int16Array(this.frameSamples);
    this.fill = 0;
    this.peak = 0;
    // downsampling state: running sum and how much of the current output bin is filled
    this.acc = 0;
    this.binFill = 0;
    // upsampling state: previous input sample and the next output position between prev and x
    this.prev = 0;
    this.t = 0;
    this.enabled = true;
    this.port.onmessage = (event) => {
      const msg = event.data || {};
      if (msg.type === "enable") this.enabled = !!msg.on;
    };
  }

  emit(value) {
    const v = value > 1 ? 1 : value < -1 ? -1 : value;
    const a = v < 0 ? -v : v;
    if (a > this.peak) this.peak = a;
    this.frame[this.fill++] = v < 0 ? Math.round(v * 32768) : Math.round(v * 32767);
    if (this.fill === this.frameSamples) {
      const buffer = this.frame.buffer;
      this.port.postMessage({ type: "frame", buffer, peak: this.peak }, [buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.fill = 0;
      this.peak = 0;
    }
  }

  push(x) {
    if (this.step >= 1) {
      let remaining = 1;
      while (remaining > 0) {
        const take = Math.min(this.step - this.binFill, remaining);
        this.acc += x * take;
        this.binFill += take;
        remaining -= take;
        if (this.binFill >= this.step - 1e-9) {
          this.emit(this.acc / this.step);
          this.acc = 0;
          this.binFill = 0;
        }
      }
    } else {
      while (this.t < 1) {
        this.emit(this.prev + (x - this.prev) * this.t);
        this.t += this.step;
      }
      this.t -= 1;
      this.prev = x;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!this.enabled || !input || input.length === 0) return true;
    const channels = input.length;
    const n = input[0].length;
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (let c = 0; c < channels; c++) sum += input[c][i];
      this.push(sum / channels);
    }
    return true;
  }
}

registerProcessor("voice-capture", CaptureProcessor);
