// Agent audio playback on the audio rendering thread: a ring buffer of float samples at the
// server's output rate, read out at the context's rate with linear interpolation.
//
// Why a ring buffer in a worklet: scheduling one AudioBufferSourceNode per network chunk leaves
// clicks and gaps whenever a chunk arrives late or the main thread stalls. Here audio is played
// continuously from one buffer; a short prebuffer (60 ms) absorbs network jitter at the start of
// each burst, and a burst's tail plays out after the same wait even if no more audio follows.
// `clear` (the server's 0x0B on barge-in) empties the buffer at once, within one render quantum.
//
// Messages in:  {type:"pcm", buffer: ArrayBuffer of s16le}  {type:"clear"}  {type:"rate", rate}
//               {type:"stats", id} (asks for an immediate report, answered with the same id)
// Messages out: {type:"stats", id, buffered, bufferedMs, samplesPlayed, quantaPlayed, drained, clears,
//                dropped, lastCleared, playing, rate}

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    const opts = (options && options.processorOptions) || {};
    super();
    this.prebufferMs = opts.prebufferMs ?? 60;
    this.capacitySeconds = opts.capacitySeconds || 120;
    this.reportEvery = opts.reportEveryQuanta || 12; // ~32 ms at 48 kHz
    this.samplesPlayed = 0; // source samples consumed
    this.quantaPlayed = 0; // render quanta that carried agent audio
    this.drained = 0; // times the buffer ran empty while playing (end of a burst, or a gap)
    this.clears = 0;
    this.dropped = 0; // samples dropped because the ring was full
    this.lastCleared = 0; // samples the latest clear threw away
    this.sinceReport = 0;
    this.setRate(opts.sourceRate || 24000);
    this.port.onmessage = (event) => this.onMessage(event.data || {});
  }

  setRate(rate) {
    this.rate = rate;
    this.step = rate / sampleRate; // source samples per output sample
    this.capacity = Math.round(rate * this.capacitySeconds);
    this.ring = new Float32Array(this.capacity);
    this.prebuffer = Math.max(2, Math.round((rate * this.prebufferMs) / 1000));
    this.waitLimit = Math.ceil((sampleRate * this.prebufferMs) / 1000 / 128); // quanta
    this.reset();
  }

  reset() {
    this.readPos = 0;
    this.writePos = 0;
    this.count = 0;
    this.frac = 0;
    this.playing = false;
    this.waited = 0;
  }

  onMessage(msg) {
    if (msg.type === "pcm") {
      this.write(new Int16Array(msg.buffer));
    } else if (msg.type === "clear") {
      this.lastCleared = this.count;
      this.reset();
      this.clears++;
      this.report();
    } else if (msg.type === "rate") {
      if (msg.rate && msg.rate !== this.rate) this.setRate(msg.rate);
      this.report();
    } else if (msg.type === "stats") {
      this.report(msg.id);
    }
  }

  write(pcm) {
    for (let i = 0; i < pcm.length; i++) {
      if (this.count === this.capacity) {
        this.dropped += pcm.length - i;
        break;
      }
      this.ring[this.writePos] = pcm[i] / 32768;
      this.writePos = (this.writePos + 1) % this.capacity;
      this.count++;
    }
  }

  report(id = null) {
    this.sinceReport = 0;
    this.port.postMessage({
      type: "stats",
      id, // the id of the {type:"stats", id} request this answers; null for periodic reports
      buffered: this.count,
      bufferedMs: (this.count * 1000) / this.rate,
      samplesPlayed: this.samplesPlayed,
      quantaPlayed: this.quantaPlayed,
      drained: this.drained,
      clears: this.clears,
      dropped: this.dropped,
      lastCleared: this.lastCleared,
      playing: this.playing,
      rate: this.rate,
    });
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.count > 0) {
      // start a burst once the prebuffer is full, or once its oldest sample waited long enough
      this.waited++;
      if (this.count >= this.prebuffer || this.waited >= this.waitLimit) {
        this.playing = true;
        this.waited = 0;
      }
    }
    let wrote = false;
    if (this.playing) {
      for (let i = 0; i < out.length; i++) {
        if (this.count === 0) {
          // ran dry: the rest of this quantum is silence; wait for the prebuffer again
          this.playing = false;
          this.drained++;
          out.fill(0, i);
          break;
        }
        const a = this.ring[this.readPos];
        const b = this.count > 1 ? this.ring[(this.readPos + 1) % this.capacity] : a;
        out[i] = a + (b - a) * this.frac;
        wrote = true;
        this.frac += this.step;
        while (this.frac >= 1 && this.count > 0) {
          this.frac -= 1;
          this.readPos = (this.readPos + 1) % this.capacity;
          this.count--;
          this.samplesPlayed++;
        }
      }
    } else {
      out.fill(0);
    }
    if (wrote) this.quantaPlayed++;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (++this.sinceReport >= this.reportEvery) this.report();
    return true;
  }
}

registerProcessor("voice-playback", PlaybackProcessor);
