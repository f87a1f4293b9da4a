// The artstyle page: pick or drop images or videos, see a card per file with its label and a
// bar per class (a video: the mean over its sampled frames, and a strip of those frames). Talks only to this server (/healthz, /v1/predict); nothing is loaded from elsewhere.
"use strict";

const state = { classes: [], limits: { max_images: 32, max_upload_bytes: 10 * 1024 * 1024 }, explain: false };
const $ = (id) => document.getElementById(id);

document.addEventListener("DOMContentLoaded", () => {
  loadServerInfo();
  const input = $("file-input");
  input.addEventListener("change", () => {
    classifyFiles([...input.files]);
    input.value = ""; // choosing the same file again is a new request
  });
  setUpDropZone($("dropzone"));
  $("clear").addEventListener("click", clearResults);
});

async function loadServerInfo() {
  try {
    const health = await (await fetch("/healthz")).json();
    state.classes = health.classes;
    state.limits = health.limits;
    state.explain = health.explain.available;
    $("model-info").textContent = `Model ${health.model}: ${health.classes.join(", ")}`;
    $("limits-hint").textContent =
      `JPEG, PNG, WebP, GIF, BMP or TIFF, or a video (MP4, WebM, MKV, AVI, MOV); ` +
      `up to ${health.limits.max_images} files and ` +
      `${formatMB(health.limits.max_upload_bytes)} per upload`;
    const explain = $("explain");
    explain.disabled = !health.explain.available;
    $("explain-hint").textContent = health.explain.available ? "" : `Unavailable: ${health.explain.detail}`;
  } catch (error) {
    $("model-info").textContent = "The server cannot be reached.";
  }
}

function setUpDropZone(zone) {
  const stop = (event) => { event.preventDefault(); event.stopPropagation(); };
  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
    stop(event);
    zone.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, (event) => {
    stop(event);
    zone.classList.remove("dragging");
  }));
  zone.addEventListener("drop", (event) => classifyFiles([...event.dataTransfer.files]));
  // A file dropped beside the zone would otherwise replace the page with the image.
  ["dragover", "drop"].forEach((type) => document.addEventListener(type, (event) => event.preventDefault()));
}

function formatMB(bytes) {
  return `${(bytes / 1024 / 1024).toLocaleString(undefined, { maximumFractionDigits: 1 })} MB`;
}

function percent(p) {
  return `${(p * 100).toFixed(1)}%`;
}

// ------------------------------------------------------------------------------ requests

async function classifyFiles(files) {
  if (!files.length) return;
  const cards = files.map(addCard);
  $("clear").hidden = false;
  const batches = splitIntoRequests(files.map((file, i) => ({ file, card: cards[i] })));
  setStatus(`Classifying ${files.length} image${files.length > 1 ? "s" : ""}…`);
  let failed = 0;
  for (const batch of batches) failed += await classifyBatch(batch);
  const done = files.length - failed;
  setStatus(`Classified ${done} of ${files.length} image${files.length > 1 ? "s" : ""}` +
            (failed ? `; ${failed} could not be classified.` : "."));
}

// Requests within the server's limits: at most max_images files and max_upload_bytes each
// (with room for the multipart framing). A file too large on its own fails here, unsent.
function splitIntoRequests(items) {
  const budget = state.limits.max_upload_bytes - 64 * 1024;
  const batches = [];
  let current = [], size = 0;
  for (const item of items) {
    if (item.file.size > budget) {
      showError(item.card, `too large: ${formatMB(item.file.size)}, the limit is ${formatMB(state.limits.max_upload_bytes)}`);
      continue;
    }
    if (current.length && (current.length >= state.limits.max_images || size + item.file.size > budget)) {
      batches.push(current);
      current = []; size = 0;
    }
    current.push(item);
    size += item.file.size;
  }
  if (current.length) batches.push(current);
  return batches;
}

// The API key of a server started with one, asked once and kept for this tab only.
function authHeaders() {
  const key = sessionStorage.getItem("artstyle-api-key");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function askForKey() {
  const key = window.prompt("This server needs an API key:");
  if (key) sessionStorage.setItem("artstyle-api-key", key.trim());
  return Boolean(key);
}

// Returns how many of the batch's images could not be classified.
async function classifyBatch(batch) {
  const form = new FormData();
  batch.forEach(({ file }) => form.append("files", file, file.name));
  const explain = state.explain && $("explain").checked;
  let body, response;
  try {
    const url = `/v1/predict${explain ? "?explain=true" : ""}`;
    response = await fetch(url, { method: "POST", body: form, headers: authHeaders() });
    if (response.status === 401 && askForKey()) { // a server started with an API key
      response = await fetch(url, { method: "POST", body: form, headers: authHeaders() });
    }
    body = await response.json();
  } catch (error) {
    batch.forEach(({ card }) => showError(card, "the server could not be reached"));
    return batch.length;
  }
  if (!body.results) { // the whole request was refused: say why on every card
    batch.forEach(({ card }) => showError(card, body.detail || `HTTP ${response.status}`));
    return batch.length;
  }
  let failed = 0;
  body.results.forEach((result, i) => {
    if (result.error) { showError(batch[i].card, result.error); failed += 1; }
    else showResult(batch[i].card, result, body.classes);
  });
  return failed;
}

function setStatus(text) {
  $("status").textContent = text;
}

function clearResults() {
  document.querySelectorAll("#results .preview-image").forEach((img) => URL.revokeObjectURL(img.src));
  $("results").replaceChildren();
  $("clear").hidden = true;
  setStatus("");
}

// ------------------------------------------------------------------------------ cards

function addCard(file) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  const img = card.querySelector(".preview-image");
  img.src = URL.createObjectURL(file);
  img.alt = `Preview of ${file.name}`;
  img.addEventListener("error", () => { img.hidden = true; }, { once: true }); // not an image the browser shows
  card.querySelector(".file-name").textContent = file.name;
  $("results").append(card);
  return card;
}

function showResult(card, result, classes) {
  card.removeAttribute("aria-busy");
  card.classList.add("done");
  card.dataset.label = result.label;
  card.querySelector(".label-name").textContent = result.label;
  card.querySelector(".confidence").textContent = percent(result.confidence);
  if (result.frame_strip) showFrames(card, result);
  else card.querySelector(".size").textContent = `${result.width} × ${result.height} px`;
  const bars = card.querySelector(".bars");
  bars.replaceChildren(...classes.map((name, i) => bar(name, result.probabilities[name], i, name === result.label)));
  if (result.heatmap_png) addHeatmap(card, result);
}

function bar(name, probability, index, isTop) {
  const item = document.createElement("li");
  item.className = `bar class-${index % 6}${isTop ? " top" : ""}`;
  item.dataset.class = name;
  const label = document.createElement("span");
  label.className = "bar-label";
  label.textContent = name;
  const track = document.createElement("span");
  track.className = "bar-track";
  track.setAttribute("role", "meter");
  track.setAttribute("aria-label", `${name} probability`);
  track.setAttribute("aria-valuemin", "0");
  track.setAttribute("aria-valuemax", "100");
  track.setAttribute("aria-valuenow", (probability * 100).toFixed(1));
  track.setAttribute("aria-valuetext", percent(probability));
  const fill = document.createElement("span");
  fill.className = "bar-fill";
  fill.style.width = percent(probability);
  track.append(fill);
  const value = document.createElement("span");
  value.className = "bar-value";
  value.textContent = percent(probability);
  item.append(label, track, value);
  return item;
}

// A video: its length, each class's share of the frames, and the frames with their labels.
function showFrames(card, result) {
  const shares = Object.entries(result.shares).map(([name, share]) => `${name} ${percent(share)}`).join(", ");
  card.querySelector(".size").textContent =
    `Video, ${result.duration_s.toFixed(1)} s: ${result.frames} frames (${shares})`;
  const frames = result.frame_strip;
  // The browser cannot show a video in the preview: the middle frame stands in for it.
  const preview = card.querySelector(".preview-image");
  preview.src = frames[Math.floor(frames.length / 2)].thumbnail;
  preview.hidden = false;
  const strip = card.querySelector(".frame-strip");
  strip.replaceChildren(...frames.map((frame) => {
    const item = document.createElement("li");
    item.dataset.label = frame.label;
    const img = document.createElement("img");
    img.src = frame.thumbnail;
    img.alt = `${frame.label} at ${frame.time_s.toFixed(1)} s`;
    const caption = document.createElement("span");
    caption.textContent = `${frame.time_s.toFixed(1)} s · ${frame.label}`;
    item.append(img, caption);
    return item;
  }));
  strip.hidden = false;
}

function addHeatmap(card, result) {
  const heatmap = card.querySelector(".heatmap-image");
  heatmap.src = `data:image/png;base64,${result.heatmap_png}`;
  heatmap.alt = `Grad-CAM heatmap for ${result.label}: red where the model looked most`;
  const toggle = card.querySelector(".heatmap-toggle");
  toggle.hidden = false;
  const show = (on) => {
    heatmap.hidden = !on;
    card.querySelector(".preview-image").hidden = on;
    toggle.setAttribute("aria-pressed", String(on));
    toggle.textContent = on ? "Show original" : "Show heatmap";
  };
  toggle.addEventListener("click", () => show(heatmap.hidden));
  show(true); // asked for: shown first
}

function showError(card, message) {
  card.removeAttribute("aria-busy");
  card.classList.add("failed");
  card.querySelector(".label-name").textContent = "Not classified";
  const error = card.querySelector(".error");
  error.hidden = false;
  error.textContent = message;
}
