// Draws one turn's latency waterfall (the 0x09 done payload) as horizontal DOM bars.
//
// Why DOM and not canvas: each bar is an element with data-stage and data-ms, so the headless
// browser test (and a curious user in devtools) can read exactly what was drawn.

import { WATERFALL_STAGES } from "./protocol.js";

/**
 * Stage times in ms from the end of the user's speech. The orchestrator sends
 * `{"turn", "mode", "stages_ms": {stage: ms since speech_end | null}, "steps_ms": {...}}`
 * (services/orchestrator/waterfall.py); stages that did not happen (e.g. llm_first_token in
 * direct mode) are null and left out.
 */
export function stageTimes(done) {
  const src = (done && done.stages_ms) || {};
  const times = {};
  for (const stage of WATERFALL_STAGES) {
    const value = src[stage];
    if (typeof value === "number" && Number.isFinite(value)) times[stage] = value;
  }
  return times;
}

/** Appends one turn's waterfall (newest first) into `container`; returns its element. */
export function drawWaterfall(container, done, turnIndex, keep = 6) {
  const times = stageTimes(done);
  const stages = WATERFALL_STAGES.filter((s) => s in times);
  const total = Math.max(1, ...stages.map((s) => times[s]));
  const box = document.createElement("div");
  box.className = "waterfall";
  box.dataset.turn = String(turnIndex);
  const title = document.createElement("div");
  title.className = "title";
  const label = done && done.interrupted ? " (interrupted)" : "";
  title.textContent = `Turn ${turnIndex}${label} — ${Math.round(total)} ms from end of speech to done`;
  box.appendChild(title);
  let previous = 0;
  for (const stage of stages) {
    const at = times[stage];
    const start = Math.min(previous, at);
    const row = document.createElement("div");
    row.className = "stage";
    const name = document.createElement("span");
    name.textContent = stage;
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.stage = stage;
    bar.dataset.ms = String(Math.round(at));
    bar.style.left = `${(100 * start) / total}%`;
    bar.style.width = `${(100 * Math.max(0, at - start)) / total}%`;
    bar.title = `${stage}: +${Math.round(at - start)} ms (at ${Math.round(at)} ms)`;
    track.appendChild(bar);
    const ms = document.createElement("span");
    ms.className = "ms";
    ms.textContent = stage === "speech_end" ? "0 ms" : `${Math.round(at)} (+${Math.round(at - start)})`;
    row.append(name, track, ms);
    box.appendChild(row);
    previous = Math.max(previous, at);
  }
  container.prepend(box);
  while (container.children.length > keep) container.lastElementChild.remove();
  return box;
}
