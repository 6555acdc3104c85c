// personkit's web page: plain JavaScript against the service's own API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// POST a form; the JSON answer, or an Error with the server's message and field.
async function post(url, form) {
  const response = await fetch(url, { method: "POST", body: form });
  const data = await response.json();
  if (!response.ok) {
    throw new Error(`${data.field ? data.field + ": " : ""}${data.error || response.status}`);
  }
  return data;
}

function attributeText(attributes) {
  return Object.entries(attributes || {})
    .map(([name, a]) => `${name} ${a.label} (${Math.round(100 * (a.probability ?? a.confidence))}%)`)
    .join(", ");
}

async function predict(file) {
  showError("");
  const form = new FormData();
  form.append("image", file);
  const boxes = $("boxes").value.trim();
  if (boxes) form.append("boxes", boxes);
  try {
    const data = await post("/predict?overlay=1", form);
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
  } catch (e) {
    showError(e.message);
  }
}

function card(hit) {
  const figure = document.createElement("figure");
  figure.className = "hit" + (hit.same_person ? " same" : "");
  const img = document.createElement("img");
  img.src = hit.thumbnail;
  img.alt = hit.id;
  const caption = document.createElement("figcaption");
  const time = hit.last_frame ? `${hit.first_time.toFixed(1)}–${hit.last_time.toFixed(1)} s` : "crop";
  const distance = hit.distance === null ? "" : ` · distance ${hit.distance.toFixed(4)}`;
  caption.innerHTML = "";
  caption.append(Object.assign(document.createElement("b"), { textContent: hit.id }));
  caption.append(document.createElement("br"), `${hit.source} · ${time}${distance}`);
  if (hit.same_person) caption.append(document.createElement("br"), "same person");
  caption.append(document.createElement("br"),
    Object.assign(document.createElement("small"), { textContent: attributeText(hit.attributes) }));
  figure.append(img, caption);
  return figure;
}

async function search(event) {
  event.preventDefault();
  showError("");
  const form = new FormData();
  const where = [...$("filters").querySelectorAll("select")]
    .filter((s) => s.value).map((s) => `${s.name}=${s.value}`).join(" ");
  form.append("where", where);
  form.append("k", $("k").value);
  if ($("entry").value.trim()) form.append("entry", $("entry").value.trim());
  else if ($("example").files.length) form.append("example", $("example").files[0]);
  try {
    const data = await post("/search", form);
    $("search-summary").textContent =
      `${data.hits.length} people${where ? " with " + where : ""}` +
      (data.threshold === null ? "" : ` · same-person threshold ${data.threshold.toFixed(4)}`);
    $("gallery").replaceChildren(...data.hits.map(card));
  } catch (e) {
    showError(e.message);
  }
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

async function start() {
  const health = await (await fetch("/healthz")).json();
  $("status").textContent = `model ${health.model}` +
    (health.index ? ` · ${health.index.entries} people indexed` : " · no index");
  if (health.index) buildFilters(health.index.attributes);
  else $("search-section").hidden = true;
  $("image-input").addEventListener("change", (e) => e.target.files.length && predict(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) predict(e.dataTransfer.files[0]);
  });
  $("search-form").addEventListener("submit", search);
  document.body.dataset.ready = "1";
}

start().catch((e) => showError(`cannot reach the server: ${e.message}`));
