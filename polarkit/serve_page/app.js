// The page of `polarkit serve`: try a model, see its attention, see and promote registry versions.
// Plain JavaScript, no external assets; every server text goes in through textContent (never innerHTML).
"use strict";

const $ = (id) => document.getElementById(id);
let MODELS = { served: [], registry: [], admin: false };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { detail: `HTTP ${r.status}` }; }
  if (!r.ok) {
    const err = new Error((data && data.detail) || `HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
  return data;
}

function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "n/a";
  return typeof v === "number" ? Number(v.toPrecision(digits)).toString() : String(v);
}

function served(task) { return MODELS.served.find((s) => s.task === task); }

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

function setTaskInputs() {
  const s = served($("task").value);
  const pair = !!(s && s.pair);
  $("single").hidden = pair;
  $("pair").hidden = !pair;
  $("model-info").textContent = s ? `${s.kind}, ${s.version !== null ? "v" + s.version : s.folder} (${s.spec})` +
    (s.metric ? ` · ${s.metric} ${fmt(s.value)}` : "") : "";
  $("result").replaceChildren();
  $("attention").replaceChildren();
  showError("");
}

async function refreshHealth() {
  try {
    const h = await api("GET", "health");
    $("health").textContent = `ok · ${Object.keys(h.tasks).length} model(s) · batching ${h.batching ? "on" : "off"}`;
  } catch (e) {
    $("health").textContent = `server unreachable: ${e.message}`;
  }
}

async function refreshModels() {
  MODELS = await api("GET", "models");
  const sel = $("task");
  const keep = sel.value;
  sel.replaceChildren(...MODELS.served.map((s) => el("option", { value: s.task, text: s.task })));
  if (MODELS.served.some((s) => s.task === keep)) sel.value = keep;
  setTaskInputs();
  renderRegistry();
}

function renderRegistry() {
  const body = $("registry").querySelector("tbody");
  const rows = MODELS.registry || [];
  $("registry-note").textContent = MODELS.registry_error
    ? `registry unavailable (${MODELS.registry_error}); store ${MODELS.store}`
    : rows.length ? `store ${MODELS.store}` : `no registered models in ${MODELS.store} (the server serves folders)`;
  body.replaceChildren(...rows.map((r) => {
    const s = served(r.task);
    const isServed = s && s.version === r.version;
    const aliases = el("td", {}, ...r.aliases.map((a) => el("span", { class: `chip ${a}`, text: a })));
    const action = el("td");
    if (MODELS.admin && !r.aliases.includes("champion")) {
      const b = el("button", { class: "secondary promote", type: "button", "data-task": r.task,
                               "data-version": String(r.version), text: "Promote" });
      b.addEventListener("click", () => promote(r));
      action.append(b);
    }
    return el("tr", { "data-task": r.task, "data-version": String(r.version) },
      el("td", { text: r.task }), el("td", { class: "num", text: `v${r.version}` }), aliases,
      el("td", { text: r.metric || "" }), el("td", { class: "num", text: fmt(r.value) }),
      el("td", { text: r.run_id || "" }), el("td", { text: (r.created || "").slice(0, 16) }),
      el("td", { text: isServed ? "✓ serving" : "" }), action);
  }));
}

async function promote(row, force = false) {
  const champ = MODELS.registry.find((r) => r.task === row.task && r.aliases.includes("champion"));
  const what = `${row.task} v${row.version} (${row.metric || "metric"} ${fmt(row.value)})`;
  const question = force ? null : champ
    ? `Promote ${what} to champion?\nIt replaces v${champ.version} (${fmt(champ.value)}). The server then reloads and serves it.`
    : `Promote ${what} to champion? The server then reloads and serves it.`;
  if (question && !window.confirm(question)) return;
  const msg = $("promote-message");
  msg.textContent = "promoting…";
  let text;
  try {
    const out = await api("POST", "promote", { task: row.task, version: row.version, force });
    const rel = await api("POST", "reload");
    const changed = rel.changed.map((c) => `${c.task} v${c.from ?? "-"} → v${c.to}`).join(", ");
    text = `${out.message}${changed ? `; now serving ${changed}` : ""}`;
  } catch (e) {
    if (e.status === 409 && /use force/.test(e.message) && !force &&
        window.confirm(`${e.message}\n\nPromote anyway (force)?`)) {
      return promote(row, true);
    }
    text = `not promoted: ${e.message}`;
  }
  try {
    await refreshModels();  // the table first, then the message: it says the table is current
  } catch (e) {
    text += ` (the list could not be refreshed: ${e.message})`;
  }
  msg.textContent = text;
}

function renderOutput(task, out, res) {
  const s = served(task);
  const box = el("div", { class: "output" });
  if ("label" in out) {
    box.append(el("div", { class: "answer", id: "answer", text: `${out.label}` },
      el("span", { class: "score-of", text: `  ${(100 * out.confidence).toFixed(1)}%` })));
  } else if ("score" in out) {
    box.append(el("div", { class: "answer", id: "answer", text: out.score.toFixed(2) },
      el("span", { class: "score-of", text: " / 5 similarity" })));
    box.append(bars({ score: out.score / 5 }));
  } else if ("pairs" in out) {
    box.append(el("div", { class: "answer", id: "answer",
      text: out.pairs.length ? out.pairs.map((p) => `${p[0]}: ${p[1]}`).join(", ") : "(no keyword)" }));
  } else if ("labels" in out) {
    const names = Object.keys(out.labels);
    box.append(el("div", { class: "answer", id: "answer", text: names.length ? names.join(", ") : "(no label)" }));
  } else if ("embedding" in out) {
    box.append(el("div", { class: "answer", id: "answer", text: `embedding of ${out.embedding.length} numbers` }));
  }
  if (out.probs) box.append(bars(out.probs));
  box.append(el("p", { class: "muted", text: `answered by ${task} ${res.version !== null ? "v" + res.version : ""} (${res.spec})` }));
  return box;
}

function bars(probs) {
  const g = el("div", { class: "bars" });
  for (const [name, p] of Object.entries(probs)) {
    const fill = el("span");
    fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
    g.append(el("span", { text: name }), el("div", { class: "bar" }, fill), el("span", { class: "num", text: p.toFixed(3) }));
  }
  return g;
}

async function onPredict(ev) {
  ev.preventDefault();
  const task = $("task").value;
  const s = served(task);
  if (!s) return;
  const input = s.pair ? [$("text1").value, $("text2").value] : $("text").value;
  showError("");
  $("result").replaceChildren();
  $("attention").replaceChildren();
  const button = $("predict");
  button.disabled = true;
  try {
    const res = await api("POST", `predict/${encodeURIComponent(task)}`, { inputs: [input] });
    $("result").replaceChildren(renderOutput(task, res.outputs[0], res));
    if ($("show-attention").checked) {
      $("attention").append(el("p", { class: "muted", id: "attention-wait", text: "drawing attention…" }));
      const ex = await api("POST", `explain/${encodeURIComponent(task)}`, { inputs: [input] });
      $("attention").replaceChildren(...ex.views.map((v) => el("figure", {},
        el("img", { src: v.png, alt: `attention heatmap: ${v.title}` }),
        el("figcaption", { text: `${v.title}: ${v.tokens.length} tokens${v.truncated ? ` of ${v.n_total}` : ""}` }))));
    }
  } catch (e) {
    $("attention").replaceChildren();
    showError(e.message);
  } finally {
    button.disabled = false;
  }
}

window.addEventListener("DOMContentLoaded", async () => {
  $("task").addEventListener("change", setTaskInputs);
  $("predict-form").addEventListener("submit", onPredict);
  await refreshHealth();
  try { await refreshModels(); } catch (e) { showError(`cannot list models: ${e.message}`); }
  document.body.dataset.ready = "1";
});
