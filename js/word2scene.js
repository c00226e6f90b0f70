// Word2Scene frontend: presentation only. Text from files and servers is always set with
// textContent (never innerHTML), so metadata can never inject markup.
//
// Each of our nodes gets one panel (a DOM widget). What a panel shows after a run is kept in
// node.properties[VIEW], which ComfyUI saves with the workflow, so the panel comes back after a
// page reload or a workflow reload (onConfigure), as pysssss' show-text does with its widget.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const TRAINING_EVENT = "word2scene.training";
const VIEW = "w2s_view";
const MAX_LOSSES = 500; // loss points kept for the chart (older ones are thinned out)

function el(tag, style = {}, text = "") {
  const node = document.createElement(tag);
  Object.assign(node.style, style);
  if (text) node.textContent = text;
  return node;
}

// A panel sized through the widget options that both the classic canvas and Nodes 2.0 read.
// It shows results, it is no parameter: hideInPanel keeps it out of Nodes 2.0's side panel.
function addPanel(node, name, height) {
  const panel = el("div", {
    font: "11px monospace", color: "var(--input-text, #ddd)", whiteSpace: "pre-wrap",
    overflow: "auto", padding: "4px", boxSizing: "border-box", width: "100%", height: "100%",
    minHeight: `${height}px`,
  });
  panel.dataset.w2s = name;
  node.addDOMWidget(name, "w2s_panel", panel, {
    serialize: false, hideOnZoom: false, hideInPanel: true, getMinHeight: () => height, getHeight: () => height,
  });
  return panel;
}

function viewOf(node) {
  return node.properties?.[VIEW];
}

let pendingCheck = null;

function checkWorkflowState() {
  // Tell the workflow's change tracker, which saves the open workflow for a reload; it checks
  // on mouseup, before a chip's click handler has run.
  const tracker = app.extensionManager?.workflow?.activeWorkflow?.changeTracker;
  if (tracker?.checkState) tracker.checkState();
  else window.dispatchEvent(new MouseEvent("mouseup"));
}

// `soon`: at most one check a second (a training message comes every step, and a check
// serialises the whole workflow); otherwise at once.
function keepView(node, view, soon = false) {
  node.properties = node.properties || {};
  node.properties[VIEW] = view;
  if (!soon) {
    clearTimeout(pendingCheck);
    pendingCheck = null;
    checkWorkflowState();
  } else if (pendingCheck === null) {
    pendingCheck = setTimeout(() => { pendingCheck = null; checkWorkflowState(); }, 1000);
  }
}

function viewURL(ref) {
  const query = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder || "", type: ref.type || "temp" });
  return api.apiURL(`/view?${query}`);
}

// --- Concept Loader: thumbnail and the server's metadata text of the chosen file ---------------
async function showConcept(node, panel, name) {
  const request = (node.w2sRequest = (node.w2sRequest || 0) + 1); // the latest selection wins
  const current = () => request === node.w2sRequest;
  panel.replaceChildren();
  if (!name) return;
  let info;
  try {
    const response = await api.fetchApi(`/word2scene/concept?name=${encodeURIComponent(name)}`);
    info = await response.json();
  } catch (error) {
    if (current()) panel.replaceChildren(el("div", { color: "#e88" }, `could not read ${name}`));
    return;
  }
  if (!current()) return;
  panel.replaceChildren();
  if (info.error) {
    panel.append(el("div", { color: "#e88" }, String(info.error)));
    return;
  }
  if (info.has_preview) {
    const img = el("img", { maxWidth: "96px", maxHeight: "96px", float: "right", marginLeft: "6px" });
    img.src = api.apiURL(`/word2scene/concept_preview?name=${encodeURIComponent(name)}&t=${Date.now()}`);
    img.alt = "concept preview";
    panel.append(img);
  }
  panel.append(el("div", {}, String(info.text ?? "")));
}

// --- Train Concept: phase, live loss chart with axes, latest previews, summary ------------------
const CHART = { left: 46, right: 8, top: 14, bottom: 18 };

function drawLoss(canvas, losses, lastStep) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.fillStyle = "#222";
  ctx.fillRect(0, 0, width, height);
  const x0 = CHART.left, x1 = width - CHART.right, y0 = CHART.top, y1 = height - CHART.bottom;
  ctx.strokeStyle = "#888";
  ctx.beginPath();
  ctx.moveTo(x0, y0); ctx.lineTo(x0, y1); ctx.lineTo(x1, y1);
  ctx.stroke();
  ctx.fillStyle = "#bbb";
  ctx.font = "10px monospace";
  ctx.fillText("loss", 2, 10);
  if (losses.length < 1) return;
  const lo = Math.min(...losses), hi = Math.max(...losses), span = hi - lo || 1;
  ctx.textAlign = "right";
  ctx.fillText(hi.toPrecision(3), x0 - 3, y0 + 8);
  ctx.fillText(lo.toPrecision(3), x0 - 3, y1);
  ctx.textAlign = "left";
  ctx.fillText("step 1", x0, height - 4);
  ctx.textAlign = "right";
  ctx.fillText(`step ${lastStep || losses.length}`, x1, height - 4);
  ctx.textAlign = "left";
  if (losses.length < 2) return;
  ctx.strokeStyle = "#6af";
  ctx.beginPath();
  losses.forEach((v, i) => {
    const x = x0 + (i / (losses.length - 1)) * (x1 - x0);
    const y = y1 - ((v - lo) / span) * (y1 - y0);
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
}

function trainingStatus(detail) {
  const eta = Math.round(detail.eta || 0);
  return `training: step ${detail.step}/${detail.total}  loss ${Number(detail.loss).toFixed(4)}  ` +
    `${Number(detail.images_per_second || 0).toFixed(2)} img/s  ETA ${Math.floor(eta / 60)}m${eta % 60}s`;
}

// One training message (routed here by node id) folded into the node's view. Phase messages
// (loading, encoding, previews, saving, done, error) carry the server's own status line.
function onTraining(node, detail) {
  const view = viewOf(node) || { status: "not started", losses: [], previews: [] };
  if (detail.phase === "loading") {
    Object.assign(view, { losses: [], lastStep: 0, previews: [] });
  }
  if (detail.step !== undefined && detail.loss !== undefined) {
    if (detail.step === 1) view.losses = [];
    view.losses.push(Number(detail.loss));
    view.lastStep = Number(detail.step);
    if (view.losses.length > MAX_LOSSES) view.losses = view.losses.filter((_, i) => i % 2 === 0);
    view.status = trainingStatus(detail);
  }
  if (detail.phase) view.phase = String(detail.phase);
  if (detail.status) view.status = String(detail.status);
  if (Array.isArray(detail.previews)) view.previews = detail.previews.map(String).slice(0, 4);
  if (detail.summary) {
    const s = detail.summary;
    view.status = `done: ${s.steps} steps on ${s.images} images, final loss ${Number(s.final_loss).toFixed(4)}, ` +
      `${s.seconds}s -> ${s.out}`;
  }
  const settled = ["done", "error"].includes(view.phase);
  keepView(node, view, !settled);  // every step: soon; the end of a run: at once
  renderTraining(node);
}

function renderTraining(node) {
  const parts = node.w2sParts;
  const view = viewOf(node);
  if (!parts || !view) return;
  parts.status.textContent = String(view.status ?? "");
  parts.status.style.color = view.phase === "error" ? "#e88" : "";
  parts.status.dataset.phase = String(view.phase ?? "");
  drawLoss(parts.canvas, (view.losses || []).map(Number), Number(view.lastStep) || 0);
  parts.previews.replaceChildren(...(view.previews || []).map((b64) => {
    const img = el("img", { width: "64px", height: "64px", objectFit: "cover" });
    img.src = `data:image/png;base64,${b64}`;
    img.alt = "training preview";
    return img;
  }));
}

// --- Scene Prompt: the expanded prompt and what each word matched ----------------------------
function renderPrompt(node) {
  const parts = node.w2sParts;
  const view = viewOf(node);
  if (!parts || !view) return;
  const line = (label, text) => {
    const row = el("div", { marginBottom: "3px" });
    row.append(el("b", {}, `${label}: `), document.createTextNode(String(text ?? "")));
    return row;
  };
  parts.prompt.replaceChildren(line("positive", view.positive), line("negative", view.negative || "(empty)"),
    el("div", { color: "#aaa", marginTop: "4px" }, String(view.report ?? "")));
}

// --- Evaluate: its markdown report drawn as a table (cells set as text, never parsed as HTML) --
function cellText(text, parent) {
  // **bold** is the only markup the report uses
  String(text).split(/(\*\*[^*]+\*\*)/).forEach((part) => {
    if (!part) return;
    parent.append(part.startsWith("**") && part.endsWith("**") ? el("b", {}, part.slice(2, -2))
      : document.createTextNode(part));
  });
  return parent;
}

function renderReport(container, markdown) {
  container.replaceChildren();
  const lines = String(markdown ?? "").split("\n");
  let table = null;
  for (const raw of lines) {
    const line = raw.trim();
    if (line.startsWith("|")) {
      const cells = line.slice(1, line.endsWith("|") ? -1 : undefined).split("|").map((c) => c.trim());
      if (cells.every((c) => /^:?-{3,}:?$/.test(c))) continue; // the header rule
      if (!table) {
        table = el("table", { borderCollapse: "collapse", margin: "4px 0", font: "11px sans-serif" });
        container.append(table);
      }
      const header = table.rows.length === 0;
      const row = table.insertRow();
      for (const c of cells) {
        const cell = el(header ? "th" : "td", { border: "1px solid #555", padding: "1px 4px", textAlign: "left" });
        row.append(cellText(c, cell));
      }
      continue;
    }
    table = null;
    if (!line) continue;
    const para = el("div", { margin: "3px 0", whiteSpace: "pre-wrap" });
    if (line.startsWith("**Warning:**")) Object.assign(para.style, { color: "#fb5" });
    container.append(cellText(line, para));
  }
}

// --- Heat Map: a chip per word; the chosen word's overlay is shown on the node ------------------
// A repeated word is labelled as the words input selects it ("church#2", docs/heatmaps.md);
// its chip's tooltip says so in words.
function occurrenceTitle(word) {
  const m = /^(.*)#(\d+)$/.exec(word);
  if (!m) return `“${word}”: where the model attended to this word`;
  const n = Number(m[2]);
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
  return `the ${n}${suffix} “${m[1]}” of the prompt (type ${word} in words to map only this one)`;
}

function renderHeatmap(node) {
  const parts = node.w2sParts;
  const view = viewOf(node);
  if (!parts || !view) return;
  const words = (view.words || []).map(String);
  const overlays = Array.isArray(view.overlays) ? view.overlays : [];
  const chosen = Math.min(Math.max(0, Number(view.chosen) || 0), Math.max(0, words.length - 1));
  parts.chips.replaceChildren(...words.map((word, k) => {
    const chip = el("button", {
      margin: "2px", padding: "1px 6px", borderRadius: "10px", border: "1px solid #888",
      background: k === chosen ? "#357" : "#333", color: "#eee", cursor: "pointer", font: "11px sans-serif",
    }, word);
    chip.dataset.word = word;
    chip.title = occurrenceTitle(word);
    chip.addEventListener("click", () => {
      view.chosen = k;
      keepView(node, view);
      renderHeatmap(node);
      node.setDirtyCanvas?.(true, true);
    });
    return chip;
  }));
  const ref = overlays[chosen]; // overlays come word by word for the first image
  if (ref) {
    parts.overlay.src = viewURL(ref);
    parts.overlay.alt = `heat map of ${words[chosen]}`;
    parts.overlay.dataset.word = words[chosen];
    parts.overlay.style.display = "block";
  } else {
    parts.overlay.removeAttribute("src");
    parts.overlay.style.display = "none";
  }
}

// --- per-node hooks: what each of our nodes adds when created, configured and run -------------
const NODE_HOOKS = {
  W2S_ConceptLoader: {
    created(node) {
      const panel = addPanel(node, "w2s_concept", 150);
      const combo = node.widgets?.find((w) => w.name === "concept_name");
      if (!combo) return;
      const callback = combo.callback;
      combo.callback = (value, ...rest) => {
        showConcept(node, panel, value);
        return callback?.call(combo, value, ...rest);
      };
      node.w2sShow = () => showConcept(node, panel, combo.value);
      setTimeout(node.w2sShow, 0);
    },
    configured(node) {
      node.w2sShow?.(); // the saved choice, not the default one
    },
  },
  W2S_ScenePrompt: {
    created(node) {
      node.w2sParts = { prompt: addPanel(node, "w2s_prompt", 130) };
    },
    configured: renderPrompt,
    executed(node, message) {
      const first = (key) => (Array.isArray(message?.[key]) ? String(message[key][0] ?? "") : "");
      keepView(node, { positive: first("positive"), negative: first("negative"), report: first("text") });
      renderPrompt(node);
    },
  },
  W2S_TrainConcept: {
    created(node) {
      const panel = addPanel(node, "w2s_training", 210);
      const status = el("div", {}, "not started");
      const canvas = el("canvas", { width: "100%", height: "100px", display: "block" });
      canvas.width = 320;
      canvas.height = 100;
      const previews = el("div", { display: "flex", gap: "4px", marginTop: "4px" });
      panel.append(status, canvas, previews);
      node.w2sParts = { status, canvas, previews };
      node.w2sTraining = (detail) => onTraining(node, detail);
    },
    configured: renderTraining,
  },
  W2S_Heatmap: {
    created(node) {
      const panel = addPanel(node, "w2s_words", 220);
      const chips = el("div");
      const overlay = el("img", { width: "100%", height: "170px", objectFit: "contain", display: "none" });
      overlay.dataset.w2s = "w2s_overlay";
      panel.append(chips, overlay);
      node.w2sParts = { chips, overlay };
    },
    configured: renderHeatmap,
    executed(node, message) {
      const words = Array.isArray(message?.words) ? message.words.map(String) : [];
      const overlays = Array.isArray(message?.overlays) ? message.overlays : [];
      keepView(node, { words, overlays, chosen: 0 });
      renderHeatmap(node);
    },
  },
  W2S_Evaluate: {
    // The report (a markdown table) drawn as a table; every cell is text, so file names stay text.
    created(node) {
      node.w2sParts = { report: addPanel(node, "w2s_report", 220) };
    },
    configured(node) {
      if (node.w2sParts && viewOf(node)) renderReport(node.w2sParts.report, viewOf(node).text);
    },
    executed(node, message) {
      keepView(node, { text: Array.isArray(message?.text) ? message.text.map(String).join("\n") : "" });
      NODE_HOOKS.W2S_Evaluate.configured(node);
    },
  },
};

function findNode(id) {
  const graph = app.graph;
  if (!graph || id === undefined || id === null) return null;
  const local = String(id).split(":").pop(); // a node inside a subgraph is reported as "outer:inner"
  return graph.getNodeById?.(Number(local)) ?? graph.getNodeById?.(local) ?? null;
}

app.registerExtension({
  name: "Word2Scene.Nodes",
  setup() {
    // One listener for every Train Concept node, routed by the node id the server reports.
    api.addEventListener(TRAINING_EVENT, ({ detail }) => findNode(detail?.node)?.w2sTraining?.(detail));
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const hooks = NODE_HOOKS[nodeData.name];
    if (!hooks) return;
    const wrap = (method, hook) => {
      if (!hook) return;
      const original = nodeType.prototype[method];
      nodeType.prototype[method] = function (...args) {
        const result = original?.apply(this, args);
        hook(this, ...args);
        return result;
      };
    };
    wrap("onNodeCreated", hooks.created);
    wrap("onConfigure", hooks.configured && ((node) => hooks.configured(node)));
    wrap("onExecuted", hooks.executed);
  },
});
