// syllabus browse: plain JS, no framework, no network beyond this server.
// Record text only ever enters the page as text nodes (el() below), never as HTML.
"use strict";

const state = {
  info: null,
  collection: 0,
  tab: "records",
  filters: {},
  cursors: [0],      // start cursor of each page seen so far (for "prev")
  rows: [],
  nextCursor: null,
  selected: -1,      // index into rows
  record: null,      // the opened record
  sampleSet: 0,
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(node, ...children) {
  // replaceChildren, with el()'s rules: arrays flattened, null/false skipped, strings as text.
  node.replaceChildren(...el("div", {}, children).childNodes);
}

const $ = (selector) => document.querySelector(selector);

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) {
    const message = data.error || data.detail || response.statusText;
    showError(message);
    throw new Error(message);
  }
  showError("");
  return data;
}

function fmt(value, digits = 2) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

// -- URL state: the collection, filters and opened record survive a reload ---------------------

function saveHash() {
  const params = new URLSearchParams();
  params.set("c", state.collection);
  params.set("tab", state.tab);
  for (const [key, value] of Object.entries(state.filters)) if (value) params.set("f." + key, value);
  if (state.record) params.set("pos", state.record.position);
  history.replaceState(null, "", "#" + params.toString());
}

function loadHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const filters = {};
  for (const [key, value] of params) if (key.startsWith("f.")) filters[key.slice(2)] = value;
  return {
    collection: Number(params.get("c") || 0),
    tab: params.get("tab") || "records",
    filters,
    pos: params.has("pos") ? Number(params.get("pos")) : null,
  };
}

// -- tabs and collections -----------------------------------------------------------------------

function setTab(tab) {
  state.tab = tab;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === tab);
  }
  for (const section of document.querySelectorAll("body > section")) {
    section.hidden = section.id !== "tab-" + tab;
  }
  if (tab === "funnel") renderFunnel();
  if (tab === "scores") loadHistogram();
  if (tab === "labels") loadAgreement();
  if (tab === "samples") loadSamples(0);
  saveHash();
}

function setCollection(index) {
  state.collection = index;
  $("#collection").value = String(index);
  const kinds = state.info.collections[index] ? state.info.collections[index].kinds : {};
  const select = $("#f-kind");
  fill(select, el("option", {value: ""}, "any kind"),
    ...Object.keys(kinds).sort().map((kind) => el("option", {value: kind}, `${kind} (${kinds[kind]})`)));
  if (state.filters.kind) select.value = state.filters.kind;
}

function fillFilterForm() {
  const form = $("#filters");
  for (const input of form.querySelectorAll("input, select")) {
    input.value = state.filters[input.name] || "";
  }
}

function readFilterForm() {
  const filters = {};
  for (const input of $("#filters").querySelectorAll("input, select")) {
    if (input.value.trim()) filters[input.name] = input.value.trim();
  }
  return filters;
}

// -- records --------------------------------------------------------------------------------

function queryString(extra) {
  const params = new URLSearchParams({c: state.collection, ...state.filters, ...extra});
  return params.toString();
}

async function loadPage(cursor, openPos) {
  const data = await api("/api/records?" + queryString({cursor, limit: 50}));
  state.rows = data.rows;
  state.nextCursor = data.next_cursor;
  renderList(data);
  if (openPos !== undefined && openPos !== null) {
    const index = state.rows.findIndex((row) => row.position === openPos);
    if (index >= 0) select(index); else openRecord(openPos);
  } else {
    select(-1, false);  // j opens the first row
  }
}

async function search(openPos) {
  state.cursors = [0];
  $("#status").textContent = "searching…";
  await loadPage(0, openPos);
  const token = JSON.stringify([state.collection, state.filters]);
  api("/api/count?" + queryString({})).then((data) => {
    if (token !== JSON.stringify([state.collection, state.filters])) return;
    const total = state.info.collections[state.collection].rows;
    $("#status").textContent = `${data.total.toLocaleString()} of ${total.toLocaleString()} records match`;
  }).catch(() => {});
  saveHash();
}

function renderList(data) {
  const body = $("#list tbody");
  fill(body, ...state.rows.map((row, index) => el("tr", {
    "data-index": index, "data-position": row.position, onclick: () => select(index),
  },
  el("td", {}, row.position),
  el("td", {}, row.kind),
  el("td", {title: row.source}, row.source),
  el("td", {}, fmt(row.score)),
  el("td", {class: "label"}, row.label === null || row.label === undefined ? "" : row.label),
  el("td", {class: "snippet", title: row.drop_reason || ""},
    row.drop_reason ? el("span", {class: "tag drop"}, row.drop_reason) : null, " ",
    row.snippet.replace(/\s+/g, " ")))));
  const pageNo = state.cursors.length;
  $("#page-no").textContent = `page ${pageNo} · ${state.rows.length} shown · scanned ${data.scanned.toLocaleString()} in ${(data.seconds * 1000).toFixed(0)} ms`;
  $("#prev").disabled = state.cursors.length <= 1;
  $("#next").disabled = state.nextCursor === null;
  if (!state.rows.length) body.append(el("tr", {}, el("td", {colspan: 6, class: "dim"}, "no record matches")));
}

async function nextPage() {
  if (state.nextCursor === null) return;
  state.cursors.push(state.nextCursor);
  await loadPage(state.nextCursor);
}

async function prevPage() {
  if (state.cursors.length <= 1) return;
  state.cursors.pop();
  await loadPage(state.cursors[state.cursors.length - 1]);
}

function select(index, open = true) {
  state.selected = index;
  for (const row of document.querySelectorAll("#list tbody tr")) {
    row.classList.toggle("selected", Number(row.dataset.index) === index);
  }
  const row = document.querySelector(`#list tbody tr[data-index="${index}"]`);
  if (row) row.scrollIntoView({block: "nearest"});
  if (open && state.rows[index]) openRecord(state.rows[index].position);
}

async function move(step) {
  const index = state.selected + step;
  if (index >= 0 && index < state.rows.length) return select(index);
  if (index >= state.rows.length && state.nextCursor !== null) {
    await nextPage();
    return select(0);
  }
  if (index < 0 && state.cursors.length > 1) {
    await prevPage();
    return select(state.rows.length - 1);
  }
}

async function openRecord(position) {
  const record = await api(`/api/record?c=${state.collection}&pos=${position}`);
  state.record = record;
  renderRecord(record);
  saveHash();
}

function highlighted(text, spans) {
  // The text with each [start, end) span in a <mark>, built as text nodes.
  const parts = [];
  let at = 0;
  for (const span of spans.sort((a, b) => a.start - b.start)) {
    if (span.start < at || span.end > text.length || span.end <= span.start) continue;
    parts.push(text.slice(at, span.start), el("mark", {title: span.title}, text.slice(span.start, span.end)));
    at = span.end;
  }
  parts.push(text.slice(at));
  return el("pre", {id: "record-text"}, parts);
}

function kvTable(object) {
  return el("table", {class: "kv"}, Object.entries(object || {}).map(([key, value]) =>
    el("tr", {}, el("td", {}, key),
      el("td", {}, typeof value === "string" ? value : JSON.stringify(value)))));
}

function labelBar(record) {
  const current = record.label ? record.label.score : null;
  return el("div", {class: "labelbar"}, el("span", {class: "dim"}, "educational value"),
    [0, 1, 2, 3, 4, 5].map((score) => el("button", {
      type: "button", class: current === score ? "on" : "", "data-score": score,
      onclick: () => setLabel(score),
    }, score)));
}

function renderRecord(record) {
  const meta = record.meta || {};
  const contamination = [].concat(meta.contamination || []).filter((hit) => hit && typeof hit.start === "number");
  const spans = contamination.map((hit) => ({start: hit.start, end: hit.end,
    title: `${hit.benchmark} ${hit.item}: ${hit.ngram}-gram`}));
  const exercise = ["prompt", "solution", "tests"].some((key) => typeof meta[key] === "string");
  const shown = new Set(["prompt", "solution", "tests", "contamination", "drop_reason", "dropped_by", "duplicate_of"]);
  const rest = Object.fromEntries(Object.entries(meta).filter(([key]) => !shown.has(key)));
  const detail = $("#detail");
  fill(detail,
    el("h2", {}, `#${record.position} · ${record.kind}`),
    el("div", {class: "dim"}, record.id, " · ", record.source),
    el("div", {class: "scores"},
      el("span", {class: "tag"}, "classifier ", fmt(record.classifier)),
      el("span", {class: "tag"}, "judge ", fmt(record.judge)),
      el("span", {class: "tag", id: "your-label"}, "your label ",
        record.label && record.label.score !== null ? record.label.score : "–")),
    labelBar(record),
    el("textarea", {id: "note", placeholder: "note (n to write, Enter to save, Esc to leave)"},
      record.label ? record.label.note || "" : ""),
    el("div", {id: "note-state", class: "dim"}, record.label && record.label.note ? "note saved" : ""),
    meta.drop_reason ? el("div", {},
      el("h3", {}, "dropped"),
      el("span", {class: "tag drop"}, meta.dropped_by || "?", ": ", meta.drop_reason)) : null,
    meta.duplicate_of ? el("div", {},
      el("h3", {}, "near-duplicate"),
      "of ", el("code", {}, meta.duplicate_of), " ",
      record.kept_collection !== null ? el("button", {class: "link", type: "button",
        onclick: () => openById(record.kept_collection, meta.duplicate_of)}, "open kept member") : null, " ",
      el("button", {class: "link", type: "button",
        onclick: () => applyFilters({cluster: meta.duplicate_of})}, "whole cluster here")) : null,
    contamination.length ? el("div", {}, el("h3", {}, "decontamination"),
      contamination.map((hit) => el("div", {}, `${hit.benchmark} · ${hit.item} · ${hit.ngram}-gram at ${hit.start}-${hit.end}`))) : null,
    el("h3", {}, "text"),
    highlighted(record.text, spans),
    exercise ? el("div", {}, el("h3", {}, "exercise"),
      ["prompt", "solution", "tests"].filter((key) => meta[key]).map((key) =>
        el("div", {}, el("div", {class: "dim"}, key), el("pre", {}, meta[key]))),
      el("div", {class: "dim"}, "verdict: ",
        el("span", {class: meta.tests ? "pass" : ""}, meta.tests ? "tests pass against the solution (sandbox)" : "no tests"),
        typeof meta.asserts_dropped === "number" ? ` · asserts dropped ${meta.asserts_dropped}` : "",
        typeof meta.repairs === "number" ? ` · repairs ${meta.repairs}` : "",
        typeof meta.attempt === "number" ? ` · attempt ${meta.attempt}` : "")) : null,
    el("h3", {}, "provenance"), kvTable(record.provenance),
    el("h3", {}, "meta"), kvTable(rest),
  );
  const note = $("#note");
  note.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); saveNote(); note.blur(); }
    if (event.key === "Escape") note.blur();
  });
  note.addEventListener("change", saveNote);
}

async function sendLabel(score, note) {
  const record = state.record;
  if (!record) return;
  const data = await api("/api/label", {collection: state.collection, position: record.position, score, note});
  record.label = data.label;
  $("#labelled").textContent = `${data.labelled} labelled`;
  for (const button of document.querySelectorAll(".labelbar button")) {
    button.classList.toggle("on", Number(button.dataset.score) === data.label.score);
  }
  $("#your-label").textContent = `your label ${data.label.score === null ? "–" : data.label.score}`;
  $("#note-state").textContent = data.label.note ? "note saved" : "";
  const row = state.rows.find((item) => item.position === record.position);
  if (row) {
    row.label = data.label.score;
    const cell = document.querySelector(`#list tbody tr[data-position="${record.position}"] td.label`);
    if (cell) cell.textContent = data.label.score === null ? "" : data.label.score;
  }
}

function setLabel(score) {
  const note = state.record && state.record.label ? state.record.label.note || "" : "";
  return sendLabel(score, note);
}

function saveNote() {
  if (!state.record) return;
  const note = $("#note").value;
  const label = state.record.label || {};
  if ((label.note || "") === note) return;
  $("#note-state").textContent = "saving…";
  return sendLabel(label.score === undefined ? null : label.score, note);
}

async function openById(collection, id) {
  state.filters = {id};
  setCollection(collection);
  fillFilterForm();
  setTab("records");
  await search();
  if (state.rows.length) select(0);
}

function applyFilters(filters, collection) {
  state.filters = filters;
  if (collection !== undefined && collection !== null) setCollection(collection);
  fillFilterForm();
  setTab("records");
  return search();
}

// -- funnel -----------------------------------------------------------------------------------

function renderFunnel() {
  const funnels = state.info.funnels;
  const section = $("#tab-funnel");
  if (!funnels.length) {
    fill(section, el("p", {class: "dim"}, "No stats.json here (curate and synth write one)."));
    return;
  }
  fill(section, ...funnels.map((funnel) => el("div", {},
    el("h2", {}, `${funnel.kind}: ${funnel.name}`),
    el("table", {class: "grid"},
      el("tr", {}, el("th", {}, "step"), el("th", {}, "in"), el("th", {}, "out"), el("th", {}, "dropped, by reason")),
      funnel.steps.map((step) => el("tr", {},
        el("td", {class: "name"}, step.name),
        el("td", {}, step.records_in === null ? "–" : step.records_in.toLocaleString()),
        el("td", {}, step.records_out === null ? "–" : step.records_out.toLocaleString()),
        el("td", {class: "name"}, step.drops.map((drop) => el("div", {},
          drop.collection !== null
            ? el("button", {class: "link", type: "button", "data-reason": drop.reason,
              onclick: () => applyFilters(drop.step ? {step: drop.step, reason: drop.reason} : {}, drop.collection)},
              drop.reason)
            : el("span", {}, drop.reason),
          ` ${drop.count.toLocaleString()}`)),
          step.samples.length ? el("details", {}, el("summary", {class: "dim"}, `${step.samples.length} rejected answers`),
            step.samples.map((sample) => el("div", {}, el("b", {}, sample.reason), " ", sample.detail || "",
              el("pre", {}, sample.raw || "")))) : null)))),
    funnel.duplicates.length ? el("div", {}, el("h3", {}, "near-duplicates removed"),
      funnel.duplicates.map((dup) => el("div", {},
        el("button", {class: "link", type: "button", onclick: () => openById(dup.collection, dup.id)}, dup.id),
        " duplicates ",
        el("button", {class: "link", type: "button", onclick: () => openById(dup.kept_collection, dup.duplicate_of)}, dup.duplicate_of)))) : null,
  )));
}

// -- scores -----------------------------------------------------------------------------------

function bucketName(bucket) {
  return bucket === "5" ? "5" : `${bucket}–${Number(bucket) + 1}`;  // a 5 is the top of the scale
}

async function loadHistogram() {
  const section = $("#tab-scores");
  fill(section, el("p", {class: "dim"}, "counting scores…"));
  const data = await api(`/api/histogram?c=${state.collection}`);
  const most = Math.max(1, ...Object.values(data.buckets));
  const name = state.info.collections[state.collection].name;
  fill(section,
    el("h2", {}, `quality_score in ${name}`),
    el("p", {class: "dim"}, `buckets [b, b+1) on 0-5 · ${data.unscored.toLocaleString()} records without a score · click a bucket to list its records`),
    el("div", {class: "bars"}, Object.entries(data.buckets).map(([bucket, n]) => [
      el("button", {class: "link", type: "button", "data-bucket": bucket,
        onclick: () => applyFilters({score_min: bucket, score_max: String(Number(bucket) + 1)})}, bucketName(bucket)),
      el("div", {class: "bar", style: null, "data-width": n / most}),
      el("span", {}, n.toLocaleString()),
    ])),
    el("h3", {}, "examples per bucket"),
    Object.entries(data.examples).map(([bucket, items]) => el("div", {},
      el("b", {}, bucketName(bucket)),
      el("div", {class: "examples"}, items.map((item) => el("div", {},
        el("button", {class: "link", type: "button", onclick: () => openById(state.collection, item.id)}, fmt(item.score)),
        " ", item.snippet.replace(/\s+/g, " ")))))),
  );
  // Widths set through the CSSOM: the page's policy allows no inline style attributes.
  for (const bar of section.querySelectorAll(".bar")) bar.style.width = `${Number(bar.dataset.width) * 100}%`;
}

// -- labels -----------------------------------------------------------------------------------

async function loadAgreement() {
  const data = await api("/api/agreement");
  fill($("#tab-labels"),
    el("h2", {}, `${data.labelled} records labelled`),
    el("p", {class: "dim"}, "labels file: ", el("code", {}, data.labels_path),
      " — train a classifier on it: ", el("code", {}, `syllabus fit ${data.labels_path} -o models/edu`)),
    el("table", {class: "grid"},
      el("tr", {}, ["against", "pairs", "exact", "within 1", "mean |diff|", "Spearman"].map((h) => el("th", {}, h))),
      data.agreement.map((a) => el("tr", {},
        el("td", {class: "name"}, a.other), el("td", {}, a.pairs), el("td", {}, fmt(a.exact)),
        el("td", {}, fmt(a.within_one)), el("td", {}, fmt(a.mean_abs_diff)), el("td", {}, fmt(a.spearman))))),
    el("p", {class: "dim"}, "classifier: the record's quality_score when you labelled it; judge: `syllabus annotate` labels found here."),
  );
}

// -- portfolio samples ------------------------------------------------------------------------

async function loadSamples(offset) {
  const section = $("#tab-samples");
  const sets = state.info.samples;
  if (!sets.length) {
    fill(section, el("p", {class: "dim"}, "No portfolio samples here (samples/<task>/<candidate>.jsonl)."));
    return;
  }
  const data = await api(`/api/samples?s=${state.sampleSet}&offset=${offset}&limit=20`);
  const picker = el("select", {onchange: (event) => { state.sampleSet = Number(event.target.value); loadSamples(0); }},
    sets.map((set) => el("option", {value: set.index}, set.name)));
  picker.value = String(state.sampleSet);
  fill(section,
    el("div", {}, "task ", picker, ` · items ${offset + 1}-${Math.min(offset + 20, data.total)} of ${data.total} `,
      el("button", {type: "button", disabled: offset === 0, onclick: () => loadSamples(Math.max(0, offset - 20))}, "← prev"), " ",
      el("button", {type: "button", disabled: offset + 20 >= data.total, onclick: () => loadSamples(offset + 20)}, "next →")),
    data.items.map((item) => el("div", {},
      el("h3", {}, item.key),
      el("div", {class: "side"}, Object.entries(item.candidates).map(([name, sample]) => el("div", {class: "card"},
        el("b", {}, name), " ",
        el("span", {class: sample.passed ? "pass" : "fail"}, sample.passed ? "passed" : "failed"),
        el("span", {class: "dim"}, ` ${sample.status || ""} · ${fmt(sample.latency_s, 3)} s`),
        sample.answer !== null && sample.answer !== undefined ? el("div", {}, el("div", {class: "dim"}, "scored answer"), el("pre", {}, sample.answer)) : null,
        el("div", {class: "dim"}, "response"), el("pre", {}, sample.text || sample.error || "")))))),
  );
}

// -- keyboard ---------------------------------------------------------------------------------

function onKey(event) {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (state.tab !== "records") return;
  const key = event.key;
  if (/^[0-5]$/.test(key)) { event.preventDefault(); setLabel(Number(key)); }
  else if (key === "j" || key === "ArrowDown") { event.preventDefault(); move(1); }
  else if (key === "k" || key === "ArrowUp") { event.preventDefault(); move(-1); }
  else if (key === "n") { event.preventDefault(); const note = $("#note"); if (note) note.focus(); }
  else if (key === "]") { event.preventDefault(); nextPage(); }
  else if (key === "[") { event.preventDefault(); prevPage(); }
  else if (key === "/") { event.preventDefault(); $("#f-q").focus(); }
}

async function start() {
  state.info = await api("/api/info");
  $("#root").textContent = state.info.root;
  $("#labelled").textContent = `${state.info.labelled} labelled`;
  fill($("#collection"), ...state.info.collections.map((c) =>
    el("option", {value: c.index}, `${c.name} · ${c.role} · ${c.rows.toLocaleString()}`)));
  $("#collection").addEventListener("change", (event) => {
    state.filters = {};
    setCollection(Number(event.target.value));
    fillFilterForm();
    if (state.tab === "scores") loadHistogram();
    search();
  });
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => setTab(button.dataset.tab));
  }
  $("#filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.filters = readFilterForm();
    search();
    document.activeElement.blur();
  });
  $("#clear").addEventListener("click", () => { state.filters = {}; fillFilterForm(); search(); });
  $("#next").addEventListener("click", nextPage);
  $("#prev").addEventListener("click", prevPage);
  document.addEventListener("keydown", onKey);
  const saved = loadHash();
  state.filters = saved.filters;
  const count = state.info.collections.length;
  setCollection(saved.collection < count ? saved.collection : 0);
  fillFilterForm();
  if (count) await search(saved.pos);
  setTab(count ? saved.tab : "samples");
  document.body.dataset.ready = "1";
}

start().catch((error) => showError(String(error.message || error)));
