// personkit's web page: plain JavaScript against the service's own API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
// What the page is showing: the last image understood, the search of the gallery and its
// page, and a counter per kind of request, so that only the newest answer is shown.
const state = { image: null, query: null, offset: 0, next: null, seq: { predict: 0, search: 0 } };

function showMessage(id, message) {
  const box = $(id);
  box.textContent = message || "";
  box.hidden = !message;
}

const showError = (message) => showMessage("error", message);

// The API key, when the server asks for one (401): asked once, kept for this tab only.
const KEY_STORE = "personkit-api-key";

// fetch() with the key, asking for it (again) when the server refuses the one held.
async function api(url, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const key = sessionStorage.getItem(KEY_STORE);
    const headers = { ...(options.headers || {}), ...(key ? { Authorization: `Bearer ${key}` } : {}) };
    const response = await fetch(url, { ...options, headers });
    if (response.status !== 401 || attempt > 0) return response;
    const given = window.prompt("This server needs its API key:");
    if (!given) return response;
    sessionStorage.setItem(KEY_STORE, given.trim());
  }
}

// An image of the API into `img` (fetched with the key: an <img src> cannot send it).
async function loadImage(img, url) {
  if (!url || url.startsWith("data:")) { img.src = url || ""; return; }
  const response = await api(url);
  if (response.ok) img.src = URL.createObjectURL(await response.blob());
}

// POST a form; the JSON answer, or an Error with the server's message and field.
async function post(url, form) {
  const response = await api(url, { method: "POST", body: form });
  const data = await response.json();
  if (!response.ok) {
    throw new Error(`${data.field ? data.field + ": " : ""}${data.error || response.status}`);
  }
  return data;
}

// Run `call` as the newest request of `kind`; `show` its answer unless a newer one started.
async function latest(kind, call, show) {
  const seq = ++state.seq[kind];
  showError("");
  try {
    const data = await call();
    if (seq === state.seq[kind]) show(data);
  } catch (e) {
    if (seq === state.seq[kind]) showError(e.message);
  }
}

function attributeText(attributes) {
  return Object.entries(attributes || {})
    .map(([name, a]) => `${name} ${a.label} (${Math.round(100 * (a.probability ?? a.confidence))}%)`)
    .join(", ");
}

// Understand `file` (kept, so that edited boxes run it again).
function predict(file) {
  state.image = file;
  const form = new FormData();
  form.append("image", file);
  const boxes = $("boxes").value.trim();
  if (boxes) form.append("boxes", boxes);
  return latest("predict", () => post("/predict?overlay=1", form), showPeople);
}

function showPeople(data) {
  showMessage("predict-warning", data.warning);
  $("overlay").src = data.overlay;
  $("overlay").hidden = false;
  const list = $("people");
  list.replaceChildren(...data.people.map((p) => {
    const item = document.createElement("li");
    item.className = "person";
    const box = p.box.map((v) => Math.round(v)).join(", ");
    item.textContent = `box [${box}]: ${attributeText(p.attributes)}`;
    return item;
  }));
  if (!data.people.length) list.replaceChildren(Object.assign(
    document.createElement("li"), { textContent: "no people found" }));
}

function card(hit) {
  const figure = document.createElement("figure");
  figure.className = "hit" + (hit.same_person ? " same" : "");
  const img = document.createElement("img");
  img.alt = hit.id;
  loadImage(img, hit.thumbnail);
  const caption = document.createElement("figcaption");
  const time = hit.last_frame ? `${hit.first_time.toFixed(1)}–${hit.last_time.toFixed(1)} s` : "crop";
  const distance = hit.distance === null ? "" : ` · distance ${hit.distance.toFixed(4)}`;
  const camera = hit.recording && hit.recording !== hit.camera
    ? `${hit.camera} (${hit.recording})` : hit.camera;
  caption.append(Object.assign(document.createElement("b"), { textContent: hit.id }));
  caption.append(document.createElement("br"), `${camera} · ${time}${distance}`);
  caption.append(document.createElement("br"), Object.assign(document.createElement("span"),
    { className: "seen", textContent: seenText(hit) }));
  if (hit.same_person) caption.append(document.createElement("br"), "same person");
  caption.append(document.createElement("br"),
    Object.assign(document.createElement("small"), { textContent: attributeText(hit.attributes) }));
  const similar = Object.assign(document.createElement("button"),
    { type: "button", className: "similar", textContent: "find similar" });
  similar.addEventListener("click", () => findSimilar(hit.id));
  caption.append(document.createElement("br"), similar);
  figure.append(img, caption);
  return figure;
}

// When a result was seen, in UTC to the second ("time unknown" for an older index or a crop).
function seenText(hit) {
  if (!hit.first_seen) return "time unknown";
  const [day, first] = hit.first_seen.slice(0, 19).split("T");
  const [lastDay, last] = hit.last_seen.slice(0, 19).split("T");
  return `seen ${day} ${first}–${lastDay === day ? "" : lastDay + " "}${last} UTC`;
}

// `source=NAME`, quoted when the name holds a space, a comma or a quote.
function sourceTerm(name) {
  if (!/[\s,"']/.test(name)) return `source=${name}`;
  return name.includes('"') ? `source='${name}'` : `source="${name}"`;
}

// The search the form describes (its page aside).
function formQuery() {
  const terms = [...$("filters").querySelectorAll("select")]
    .filter((s) => s.value).map((s) => `${s.name}=${s.value}`);
  if ($("camera").value) terms.push(sourceTerm($("camera").value));
  return { where: terms.join(" "), k: $("k").value, entry: $("entry").value.trim(),
           since: $("since").value.trim(), until: $("until").value.trim(),
           example: $("example").files[0] || null, box: $("example-box").value.trim() };
}

// One page of `query`'s results, from result `offset` on.
function search(query, offset = 0) {
  const form = new FormData();
  form.append("where", query.where);
  form.append("k", query.k);
  form.append("offset", offset);
  if (query.since) form.append("since", query.since);
  if (query.until) form.append("until", query.until);
  if (query.entry) form.append("entry", query.entry);
  else if (query.example) {
    form.append("example", query.example);
    if (query.box) form.append("box", query.box);
  }
  return latest("search", () => post("/search", form), (data) => {
    Object.assign(state, { query, offset, next: data.next_offset });
    showHits(data, query);
  });
}

function showHits(data, query) {
  const first = data.offset + 1, last = data.offset + data.hits.length;
  const example = data.query.entry ? ` similar to ${data.query.entry}`
    : data.query.example ? " similar to the example" : "";
  $("search-summary").textContent = (data.hits.length ? `people ${first}–${last}` : "no people") +
    example + (query.where ? ` with ${query.where}` : "") +
    (query.since ? ` seen since ${query.since}` : "") + (query.until ? ` until ${query.until}` : "") +
    (data.threshold === null ? "" : ` · same-person threshold ${data.threshold.toFixed(4)}`);
  $("gallery").replaceChildren(...data.hits.map(card));
  showMessage("search-warning", data.warning);
  $("pages").hidden = data.offset === 0 && data.next_offset === null;
  $("prev-page").disabled = data.offset === 0;
  $("next-page").disabled = data.next_offset === null;
  if (data.query.box) drawBox(data.query.box);
}

function findSimilar(entryId) {
  $("entry").value = entryId;
  $("example").value = "";
  $("example-box").value = "";
  $("example-preview").hidden = true;
  return search(formQuery());
}

// The example image's preview, and the box drawn on it (image pixels).
function showExample() {
  const file = $("example").files[0];
  $("example-box").value = "";
  $("example-rect").hidden = true;
  $("example-preview").hidden = !file;
  if (!file) return;
  $("entry").value = "";
  const img = $("example-image");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  search(formQuery());
}

function drawBox(box) {
  const img = $("example-image");
  const scale = img.getBoundingClientRect().width / (img.naturalWidth || 1);
  const [x1, y1, x2, y2] = box.map((v) => v * scale);
  Object.assign($("example-rect").style, { left: `${Math.min(x1, x2)}px`, top: `${Math.min(y1, y2)}px`,
    width: `${Math.abs(x2 - x1)}px`, height: `${Math.abs(y2 - y1)}px` });
  $("example-rect").hidden = false;
}

// Where a pointer event is on the example image, in its pixels (clipped to it).
function imagePoint(event) {
  const img = $("example-image");
  const rect = img.getBoundingClientRect();
  const clip = (v, hi) => Math.round(Math.min(Math.max(v, 0), hi));
  return [clip((event.clientX - rect.left) * img.naturalWidth / rect.width, img.naturalWidth),
          clip((event.clientY - rect.top) * img.naturalHeight / rect.height, img.naturalHeight)];
}

// Drag a box on the example image: it becomes the box field, and the search runs again.
function dragBoxes() {
  const preview = $("example-preview");
  let start = null;
  const corners = (e) => { const [x, y] = imagePoint(e);
    return [Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x), Math.max(start[1], y)]; };
  preview.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    start = imagePoint(e);
    preview.setPointerCapture(e.pointerId);
  });
  preview.addEventListener("pointermove", (e) => { if (start) drawBox(corners(e)); });
  preview.addEventListener("pointerup", (e) => {
    if (!start) return;
    const box = corners(e);
    start = null;
    if (box[2] - box[0] < 2 || box[3] - box[1] < 2) return;  // a click, not a box
    $("example-box").value = box.join(",");
    search(formQuery());
  });
}

// One select per attribute of the index, filled from /healthz.
function buildFilters(attributes) {
  const fieldset = $("filters");
  for (const [name, labels] of Object.entries(attributes)) {
    const label = document.createElement("label");
    const select = document.createElement("select");
    select.name = name;
    select.id = `filter-${name}`;
    select.append(new Option("any", ""), ...labels.map((l) => new Option(l, l)));
    label.append(`${name} `, select);
    fieldset.append(label);
  }
}

async function buildCameras() {
  const data = await (await api("/cameras")).json();
  $("camera").append(...data.cameras.map((c) => new Option(`${c.name} (${c.entries})`, c.name)));
  if (data.cameras.some((c) => c.live)) {
    showCameras(data.cameras);
    setInterval(refreshCameras, 5000);
  }
}

// The live cameras' health (GET /cameras), one row each.
function showCameras(cameras) {
  const rows = cameras.filter((c) => c.live).map((c) => {
    const row = document.createElement("tr");
    row.className = `camera-${c.state}`;
    const seen = c.last_frame_time ? c.last_frame_time.replace("T", " ").slice(0, 19) : "–";
    for (const value of [c.name, c.state, c.fps.toFixed(1), c.frames, c.dropped, c.reconnects,
                         c.tracks_live, c.entries, seen, c.error || ""]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    }
    return row;
  });
  $("camera-status").tBodies[0].replaceChildren(...rows);
  $("cameras-section").hidden = rows.length === 0;
}

async function refreshCameras() {
  const response = await api("/cameras");
  if (response.ok) showCameras((await response.json()).cameras);
}

function listen() {
  $("image-input").addEventListener("change", (e) => e.target.files.length && predict(e.target.files[0]));
  $("boxes").addEventListener("change", () => state.image && predict(state.image));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) predict(e.dataTransfer.files[0]);
  });
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(formQuery()); });
  $("example").addEventListener("change", showExample);
  $("example-box").addEventListener("change", () => $("example").files.length && search(formQuery()));
  // Enter in a box field commits it (its change event runs again), and submits nothing else
  for (const id of ["boxes", "example-box"]) {
    $(id).addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); e.target.blur(); }
    });
  }
  $("prev-page").addEventListener("click", () =>
    search(state.query, Math.max(0, state.offset - Number(state.query.k))));
  $("next-page").addEventListener("click", () => search(state.query, state.next));
  dragBoxes();
}

async function start() {
  const health = await (await fetch("/healthz")).json();
  $("status").textContent = `model ${health.model}` +
    (health.index ? ` · ${health.index.entries} people indexed` : " · no index");
  if (health.index) {
    buildFilters(health.index.attributes);
    await buildCameras();
  } else $("search-section").hidden = true;
  listen();
  document.body.dataset.ready = "1";
}

start().catch((e) => showError(`cannot reach the server: ${e.message}`));
