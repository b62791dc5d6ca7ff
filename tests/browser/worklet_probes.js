// Probes for the page's AudioWorklets, run inside Chromium by tests/browser/test_worklets.py.
// Each renders through an OfflineAudioContext (faster than real time, sample-exact, no devices)
// with the real worklet modules the page loads, and returns plain numbers for Python to check.

// ask the playback worklet for its counters and wait for the answer to this very request
// (periodic reports sent earlier may still be in flight)
let statsRequests = 0;
function statsOf(node) {
  const id = ++statsRequests;
  return new Promise((resolve) => {
    node.port.addEventListener("message", function answer(e) {
      if (e.data.id !== id) return;
      node.port.removeEventListener("message", answer);
      resolve(e.data);
    });
    node.port.start();
    node.port.postMessage({ type: "stats", id });
  });
}

function sinePcm(n, rate, freq, amplitude) {
  const pcm = new Int16Array(n);
  for (let i = 0; i < n; i++) pcm[i] = Math.round(Math.sin((2 * Math.PI * freq * i) / rate) * amplitude);
  return pcm;
}

function sendPcm(node, pcm) {
  const copy = pcm.slice();
  node.port.postMessage({ type: "pcm", buffer: copy.buffer }, [copy.buffer]);
}

function describe(out, from, to) {
  let longestQuiet = 0;
  let run = 0;
  let crossings = 0;
  let sq = 0;
  for (let i = from; i < to; i++) {
    if (Math.abs(out[i]) < 1e-3) longestQuiet = Math.max(longestQuiet, ++run);
    else run = 0;
    if (i > from && out[i - 1] < 0 !== out[i] < 0) crossings++;
    sq += out[i] * out[i];
  }
  return { longestQuiet, crossings, rms: Math.sqrt(sq / Math.max(1, to - from)), seconds: (to - from) / 48000 };
}

async function playbackContext(seconds, sourceRate) {
  const ctx = new OfflineAudioContext(1, Math.round(48000 * seconds), 48000);
  await ctx.audioWorklet.addModule("/playback-worklet.js");
  const node = new AudioWorkletNode(ctx, "voice-playback", {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: { sourceRate },
  });
  node.connect(ctx.destination);
  return { ctx, node };
}

// 1 s of a 300 Hz sine at 24 kHz queued in 20 ms chunks; a clear arrives at 0.5 s.
async function probePlaybackClear() {
  const { ctx, node } = await playbackContext(1, 24000);
  const pcm = sinePcm(24000, 24000, 300, 16000);
  for (let off = 0; off < pcm.length; off += 480) sendPcm(node, pcm.subarray(off, off + 480));
  const queued = await statsOf(node);
  const clearFrame = Math.ceil((0.5 * 48000) / 128) * 128; // suspend() stops on a render quantum
  let atClear = null;
  ctx.suspend(clearFrame / 48000).then(async () => {
    const before = await statsOf(node);
    node.port.postMessage({ type: "clear" });
    atClear = { before, after: await statsOf(node) };
    ctx.resume();
  });
  const out = (await ctx.startRendering()).getChannelData(0);
  const first = out.findIndex((x) => Math.abs(x) > 1e-6);
  let afterMax = 0;
  for (let i = clearFrame; i < out.length; i++) afterMax = Math.max(afterMax, Math.abs(out[i]));
  return { queued: queued.buffered, atClear, first, clearFrame, afterMax, ...describe(out, first, clearFrame) };
}

// audio arriving in real time, one 20 ms chunk every 20 ms, the way the server streams it
async function probePlaybackStreaming() {
  const chunks = 40;
  const { ctx, node } = await playbackContext(1.2, 24000);
  const pcm = sinePcm(480 * chunks, 24000, 300, 16000);
  for (let k = 0; k < chunks; k++) {
    ctx.suspend((Math.round((k * 0.02 * 48000) / 128) * 128) / 48000).then(() => {
      sendPcm(node, pcm.subarray(k * 480, (k + 1) * 480));
      ctx.resume();
    });
  }
  const out = (await ctx.startRendering()).getChannelData(0);
  const stats = await statsOf(node);
  let first = out.findIndex((x) => Math.abs(x) > 1e-6);
  let last = out.length - 1;
  while (last > 0 && Math.abs(out[last]) < 1e-6) last--;
  return { stats, first, last, ...describe(out, first, last) };
}

// the capture worklet at a given context rate: a 440 Hz sine at half scale for 1 s
async function probeCapture(contextRate) {
  const ctx = new OfflineAudioContext(1, contextRate, contextRate);
  await ctx.audioWorklet.addModule("/capture-worklet.js");
  const osc = new OscillatorNode(ctx, { frequency: 440 });
  const gain = new GainNode(ctx, { gain: 0.5 });
  const node = new AudioWorkletNode(ctx, "voice-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: { targetRate: 16000, frameMs: 20 },
  });
  const frames = [];
  node.port.onmessage = (e) => frames.push(new Int16Array(e.data.buffer));
  osc.connect(gain).connect(node).connect(ctx.destination);
  osc.start();
  await ctx.startRendering();
  await new Promise((r) => setTimeout(r, 300)); // the last frames' messages
  const sizes = [...new Set(frames.map((f) => f.length))];
  const all = new Float32Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of frames) for (const v of f) all[at++] = v / 32768;
  let crossings = 0;
  let peak = 0;
  for (let i = 1; i < all.length; i++) {
    if (all[i - 1] < 0 !== all[i] < 0) crossings++;
    peak = Math.max(peak, Math.abs(all[i]));
  }
  return { frames: frames.length, sizes, samples: all.length, crossings, peak };
}
