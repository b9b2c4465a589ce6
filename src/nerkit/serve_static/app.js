// nerkit web page: POST the text to /v1/entities, draw the spans inline (displaCy style) and in a table.
// User text is only ever set through textContent, never innerHTML.
"use strict";

const COLORS = { PER: "#aa9cfc", PERSON: "#aa9cfc", ORG: "#7aecec", LOC: "#ff9561", GPE: "#feca74",
  MISC: "#ffeb80", NORP: "#c887fb", FAC: "#9cc9cc", EVENT: "#ffeb80", PRODUCT: "#bfeeb7", DATE: "#bfe1d9",
  TIME: "#bfe1d9", MONEY: "#e4e7d2", PERCENT: "#e4e7d2", LAW: "#ff8197", LANGUAGE: "#ff8197",
  WORK_OF_ART: "#f0d0ff" };
const SPARE = ["#bfeeb7", "#f0d0ff", "#c887fb", "#9cc9cc", "#e4e7d2", "#ff8197", "#bfe1d9", "#feca74"];

function colorOf(type) {
  if (COLORS[type]) return COLORS[type];
  let h = 0;
  for (const c of type) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return SPARE[h % SPARE.length];
}

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

function setStatus(msg, isError) {
  $("status").textContent = msg;
  $("status").className = isError ? "error" : "";
}

function drawLegend(types) {
  const legend = $("legend");
  legend.replaceChildren();
  for (const t of types) {
    const item = el("span", "legend-item", t);
    item.style.background = colorOf(t);
    item.dataset.type = t;
    legend.appendChild(item);
  }
}

function drawEntities(text, entities) {
  const out = $("result");
  out.replaceChildren();
  let pos = 0;
  const sorted = [...entities].sort((a, b) => a.start - b.start || b.end - a.end);
  for (const e of sorted) {
    if (e.start < pos) continue; // overlapping spans: keep the first
    if (e.start > pos) out.appendChild(document.createTextNode(text.slice(pos, e.start)));
    const mark = el("mark", "entity");
    mark.style.background = colorOf(e.type);
    mark.dataset.type = e.type;
    mark.title = `${e.type} ${e.score == null ? "" : e.score.toFixed(3)}`;
    mark.appendChild(document.createTextNode(text.slice(e.start, e.end)));
    mark.appendChild(el("span", "label", e.type));
    out.appendChild(mark);
    pos = e.end;
  }
  if (pos < text.length) out.appendChild(document.createTextNode(text.slice(pos)));

  const table = $("spans");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  sorted.forEach((e, i) => {
    const tr = el("tr");
    tr.appendChild(el("td", "num", String(i + 1)));
    const chip = el("span", "chip", e.type);
    chip.style.background = colorOf(e.type);
    const td = el("td");
    td.appendChild(chip);
    tr.appendChild(td);
    tr.appendChild(el("td", "span-text", e.text));
    tr.appendChild(el("td", "num", String(e.start)));
    tr.appendChild(el("td", "num", String(e.end)));
    tr.appendChild(el("td", "num", e.score == null ? "" : e.score.toFixed(3)));
    body.appendChild(tr);
  });
  table.hidden = sorted.length === 0;
}

async function run(ev) {
  if (ev) ev.preventDefault();
  const text = $("text").value;
  const button = $("run");
  button.disabled = true;
  setStatus("tagging…");
  const t0 = performance.now();
  try {
    const res = await fetch("v1/entities", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }) });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const err = data.error || {};
      setStatus(`error ${res.status}: ${err.message || res.statusText}`, true);
      return;
    }
    drawEntities(text, data.entities);
    const n = data.entities.length;
    setStatus(`${n} ${n === 1 ? "entity" : "entities"} in ${Math.round(performance.now() - t0)} ms`);
  } catch (e) {
    setStatus(`error: ${e.message}`, true);
  } finally {
    button.disabled = false;
  }
}

async function init() {
  $("form").addEventListener("submit", run);
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(e);
  });
  try {
    const res = await fetch("v1/labels");
    if (res.ok) drawLegend((await res.json()).entity_types);
  } catch (e) {
    setStatus(`cannot reach the server: ${e.message}`, true);
  }
}

init();
