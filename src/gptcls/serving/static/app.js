// The gptcls web page: plain JavaScript, no libraries, talks only to this server's API.
"use strict";

const $ = (id) => document.getElementById(id);
let maxTexts = 256;
// A server started with an API key answers 401 until the page sends it; the key lives in this
// tab's sessionStorage only.
const KEY_STORE = "gptcls-api-key";

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { authorization: `Bearer ${key}` } : {};
}

function askForKey(message) {
  $("auth").hidden = false;
  showError(message);
  $("api-key").focus();
}

// fetch with the key; a 401 opens the key box and fails with the server's message.
async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    askForKey(body.detail || "this server needs an API key");
    throw new Error(body.detail || "this server needs an API key");
  }
  return response;
}

function pct(p) { return (100 * p).toFixed(1) + "%"; }

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;  // textContent: messages are never HTML
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function renderMetrics(info) {
  const arch = info.architecture;
  const name = (info.backbone && info.backbone.model) || arch.family;
  $("model-line").textContent = `${name} (${arch.family}, ${arch.n_layers} blocks, width ` +
    `${arch.emb_dim}) · labels: ${info.labels.join(", ")}`;
  const m = info.metrics;
  if (!m) return;
  const table = el("table");
  const rows = [["test accuracy", m.test_accuracy], ["validation accuracy", m.validation_accuracy],
                ["train accuracy", m.train_accuracy]];
  if (m.test) rows.push(["test macro F1", m.test.macro_f1], ["test ROC AUC", m.test.roc_auc]);
  for (const [key, value] of rows) {
    if (typeof value !== "number") continue;
    const tr = el("tr");
    tr.append(el("th", "", key), el("td", "", pct(value)));
    table.append(tr);
  }
  if (m.test && m.test.per_class) {
    for (const [label, c] of Object.entries(m.test.per_class)) {
      const tr = el("tr");
      tr.append(el("th", "", `${label}: precision / recall`),
                el("td", "", `${pct(c.precision)} / ${pct(c.recall)} (n=${c.support})`));
      table.append(tr);
    }
  }
  $("metrics").replaceChildren(table);
}

function renderResult(text, result) {
  const li = el("li", "result");
  const p = result.probabilities[result.label];
  const verdict = el("div", "verdict");
  const track = el("div", "track");
  const bar = el("div", "bar");
  bar.style.width = pct(p);
  track.append(bar);
  verdict.append(el("span", "label", result.label), track, el("span", "prob", pct(p)));
  const others = Object.entries(result.probabilities)
    .map(([label, q]) => `${label} ${pct(q)}`).join(" · ");
  li.append(el("div", "text", text), verdict, el("div", "others muted", others));
  return li;
}

async function postTexts(texts) {
  const response = await api("/v1/classify", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ texts }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ")
                                              : body.detail;
    throw new Error(detail || `request failed (${response.status})`);
  }
  return body.results;
}

async function classify() {
  const texts = $("messages").value.split("\n").filter((line) => line.trim() !== "");
  showError("");
  if (texts.length === 0) { showError("Type at least one message."); return; }
  const button = $("classify");
  button.disabled = true;
  try {
    const list = $("results");
    list.replaceChildren();
    for (let i = 0; i < texts.length; i += maxTexts) {  // stay under the server's limit
      const part = texts.slice(i, i + maxTexts);
      const results = await postTexts(part);
      part.forEach((text, j) => list.append(renderResult(text, results[j])));
    }
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
  }
}

async function loadModel() {
  try {
    const info = await (await api("/v1/model")).json();
    maxTexts = info.limits.max_texts;
    renderMetrics(info);
  } catch (err) {
    $("model-line").textContent = "could not load the model description";
  }
}

function useKey() {
  sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
  $("auth").hidden = true;
  showError("");
  loadModel();
}

async function init() {
  $("classify").addEventListener("click", classify);
  $("messages").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) classify();
  });
  $("use-key").addEventListener("click", useKey);
  $("api-key").addEventListener("keydown", (e) => { if (e.key === "Enter") useKey(); });
  await loadModel();
}

init();
