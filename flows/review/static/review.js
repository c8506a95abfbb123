// The review page: every chunk of a narrated chapter, flagged ones first; play exactly a
// chunk's span of the chapter audio, mark chunks to redo or keep, choose an earlier take,
// apply (POST /api/apply runs redo_chunks on the server) and see the new takes.
"use strict";

const player = document.getElementById("player");
const takePlayer = document.getElementById("take-player");
const list = document.getElementById("chunks");
const state = {
  data: null, peaks: null, version: null, current: null, stopAt: null,
  redo: new Set(), keep: new Set(), release: new Set(), choose: {},
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function clock(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - 60 * minutes).toFixed(1).padStart(4, "0")}`;
}

function flagged(chunk) { return !chunk.passed || chunk.flags.length > 0; }

function ordered() {
  const chunks = [...state.data.chunks];
  if (document.getElementById("in-order").checked) return chunks;
  return chunks.sort((a, b) => (flagged(b) - flagged(a)) || (a.index - b.index));
}

function playChunk(index) {
  const chunk = state.data.chunks[index];
  select(index);
  takePlayer.pause();
  state.stopAt = chunk.end;
  player.currentTime = chunk.start;
  player.play();
}

player.addEventListener("timeupdate", () => {
  if (state.stopAt !== null && player.currentTime >= state.stopAt) {
    player.pause();
    state.stopAt = null;
  }
});

function playTake(url) {
  player.pause();
  takePlayer.src = url;
  takePlayer.play();
}

function select(index) {
  state.current = index;
  for (const row of list.children) {
    row.classList.toggle("current", Number(row.dataset.index) === index);
  }
  const row = document.getElementById(`chunk-${index}`);
  if (row) row.scrollIntoView({ block: "nearest" });
}

function toggle(set, index) {
  if (set.has(index)) set.delete(index); else set.add(index);
  render();
}

function toggleKeep(chunk) {
  if (chunk.kept) toggle(state.release, chunk.index); else toggle(state.keep, chunk.index);
}

function choose(chunk, take) {
  if (take === chunk.take) delete state.choose[chunk.index];
  else state.choose[chunk.index] = take;
  render();
}

function waveform(canvas, peaks, chunk) {
  const scale = window.devicePixelRatio || 1;
  canvas.width = 130 * scale;
  canvas.height = 36 * scale;
  const g = canvas.getContext("2d");
  g.fillStyle = flagged(chunk) ? "#b3261e" : "#3b6ea5";
  const step = canvas.width / peaks.length;
  peaks.forEach((peak, i) => {
    const h = Math.max(1, peak * canvas.height);
    g.fillRect(i * step, (canvas.height - h) / 2, Math.max(1, step - 0.5), h);
  });
}

function row(chunk) {
  const index = chunk.index;
  const marked = state.redo.has(index) || state.keep.has(index) || state.release.has(index)
    || index in state.choose;
  const canvas = el("canvas", { id: `wave-${index}`, onclick: () => playChunk(index) });
  if (state.peaks) waveform(canvas, state.peaks[index], chunk);
  const problems = [...chunk.reasons, ...chunk.flags];
  const takes = el("ul", { class: "takes", id: `takes-${index}` });
  for (const take of chunk.takes) {
    const chosen = (state.choose[index] ?? chunk.take) === take.number;
    takes.append(el("li", { class: chosen ? "chosen" : "", "data-take": take.number },
      el("button", { title: "hear this take", onclick: () => playTake(take.url) }, "▶"),
      `take ${take.number}: ${take.score === null ? "–" : take.score.toFixed(0)}`,
      chosen ? " (used)" : el("button", { class: "use", onclick: () => choose(chunk, take.number) }, "use")));
  }
  const keepOn = chunk.kept ? !state.release.has(index) : state.keep.has(index);
  return el("section", {
      id: `chunk-${index}`, "data-index": index,
      class: ["chunk", flagged(chunk) ? "flagged" : "", marked ? "marked" : "",
              state.current === index ? "current" : ""].join(" "),
      onclick: () => select(index),
    },
    el("div", { class: "num" }, `#${index}`,
       el("span", { class: "score" }, `score ${chunk.score.toFixed(0)}`),
       el("span", { class: "at" }, clock(chunk.start))),
    canvas,
    el("div", {},
       el("div", { class: "text" }, chunk.text),
       el("div", { class: "heard" }, `heard: ${chunk.heard}`),
       chunk.check_heard && chunk.flags.length
         ? el("div", { class: "heard" }, `chapter check heard: ${chunk.check_heard}`) : "",
       problems.length ? el("div", { class: "problems" }, problems.join(", ")) : ""),
    el("div", { class: "side" },
       el("div", { class: "row" },
          el("button", { id: `play-${index}`, onclick: () => playChunk(index) }, "▶ play"),
          el("button", { id: `redo-${index}`, class: state.redo.has(index) ? "on" : "",
                         onclick: () => toggle(state.redo, index) }, "redo"),
          el("button", { id: `keep-${index}`, class: keepOn ? "on" : "",
                         onclick: () => toggleKeep(chunk) }, keepOn ? "kept" : "keep")),
       el("div", {}, `take ${chunk.take}`, chunk.kept ? el("span", { class: "kept" }, " · kept") : ""),
       takes));
}

function pending() {
  return state.redo.size + state.keep.size + state.release.size + Object.keys(state.choose).length;
}

function render() {
  const data = state.data;
  document.getElementById("title").textContent = data.title;
  const wer = data.wer === null ? "not checked" : `${(100 * data.wer).toFixed(1)} % WER`;
  const flaggedCount = data.chunks.filter(flagged).length;
  document.getElementById("figures").textContent =
    `${(data.duration / 60).toFixed(1)} min · ${data.lufs.toFixed(1)} LUFS · ${wer} · ` +
    `${data.chunks.length} chunks, ${flaggedCount} flagged`;
  const count = pending();
  document.getElementById("pending").textContent = count ? `${count} marked` : "";
  document.getElementById("apply").disabled = count === 0 || data.job.state === "running";
  list.replaceChildren(...ordered().map(row));
}

async function load() {
  const response = await fetch("/api/chapter");
  const data = await response.json();
  if (!response.ok) {
    document.getElementById("job").textContent = data.detail;
    return;
  }
  state.data = data;
  if (state.version !== data.version) {
    state.version = data.version;
    player.src = data.audio_url;
    state.peaks = null;
    fetch("/api/peaks").then((r) => r.json()).then((peaks) => { state.peaks = peaks; render(); });
  }
  showJob(data.job);
  render();
  if (data.job.state === "running") setTimeout(load, 1000);  // opened during a redo
}

function showJob(job) {
  const line = document.getElementById("job");
  line.dataset.state = job.state;
  line.textContent = job.state === "running" ? "redoing…"
    : job.state === "done" ? `done in ${job.seconds} s: ${job.message}`
    : job.state === "failed" ? `failed: ${job.message}` : "";
}

async function apply() {
  if (!pending() || state.data.job.state === "running") return;
  const asked = { redo: [...state.redo], keep: [...state.keep], release: [...state.release],
                  choose: state.choose };
  const response = await fetch("/api/apply", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(asked),
  });
  const job = await response.json();
  if (!response.ok) { showJob({ state: "failed", message: job.detail }); return; }
  state.data.job = job;
  showJob(job);
  render();
  let now = job;
  while (now.state === "running") {
    await new Promise((resolve) => setTimeout(resolve, 500));
    now = await (await fetch("/api/job")).json();
  }
  if (now.state === "done") {  // marks stay when the redo failed, to apply again
    state.redo.clear(); state.keep.clear(); state.release.clear(); state.choose = {};
  }
  await load();
}

document.getElementById("apply").addEventListener("click", apply);
document.getElementById("in-order").addEventListener("change", render);
document.addEventListener("keydown", (event) => {
  // the browser's own shortcuts (Ctrl+R, Cmd+A) and a held key are not the page's
  if (!state.data || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (event.target.tagName === "TEXTAREA" || event.target.type === "text") return;
  const rows = [...list.children].map((r) => Number(r.dataset.index));
  const at = rows.indexOf(state.current);
  const chunk = state.current === null ? null : state.data.chunks[state.current];
  if (event.key === " ") {
    event.preventDefault();
    if (!player.paused) player.pause(); else playChunk(chunk ? chunk.index : rows[0]);
  } else if (event.key === "j" || event.key === "ArrowDown") {
    event.preventDefault();
    select(rows[Math.min(rows.length - 1, at + 1)]);
  } else if (event.key === "ArrowUp") {
    event.preventDefault();
    select(rows[Math.max(0, at - 1)]);
  } else if (event.key === "r" && chunk) {
    toggle(state.redo, chunk.index);
  } else if (event.key === "k" && chunk) {
    toggleKeep(chunk);
  } else if (event.key === "a" && pending()) {
    apply();
  }
});
load();
