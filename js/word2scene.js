// Word2Scene frontend: presentation only. Text from files and servers is always set with
// textContent (never innerHTML), so metadata can never inject markup.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const TRAINING_EVENT = "word2scene.training";

function el(tag, style = {}, text = "") {
  const node = document.createElement(tag);
  Object.assign(node.style, style);
  if (text) node.textContent = text;
  return node;
}

function addPanel(node, name, height) {
  const panel = el("div", {
    font: "11px monospace", color: "var(--input-text, #ddd)", whiteSpace: "pre-wrap",
    overflow: "auto", padding: "4px", boxSizing: "border-box", height: `${height}px`,
  });
  panel.dataset.w2s = name;
  const widget = node.addDOMWidget(name, "w2s_panel", panel, { serialize: false, hideOnZoom: false });
  widget.computeSize = (width) => [width, height];
  return panel;
}

// --- Concept Loader: thumbnail and metadata of the chosen file --------------------------------
async function showConcept(node, panel, name) {
  panel.replaceChildren();
  if (!name) return;
  let info;
  try {
    const response = await api.fetchApi(`/word2scene/concept?name=${encodeURIComponent(name)}`);
    info = await response.json();
  } catch (error) {
    panel.append(el("div", { color: "#e88" }, `could not read ${name}`));
    return;
  }
  if (info.error) {
    panel.append(el("div", { color: "#e88" }, info.error));
    return;
  }
  if (info.has_preview) {
    const img = el("img", { maxWidth: "96px", maxHeight: "96px", float: "right", marginLeft: "6px" });
    img.src = api.apiURL(`/word2scene/concept_preview?name=${encodeURIComponent(name)}&t=${Date.now()}`);
    img.alt = "concept preview";
    panel.append(img);
  }
  const facts = [
    `concepts: ${(info.concepts || []).join(", ") || "(not recorded)"}`,
    `trigger words: ${(info.trigger_words || []).join(", ")}`,
    `rank ${info.rank}, alpha ${info.alpha}, ${info.modules} modules (${info.module_set})`,
    `steps: ${info.training?.steps ?? "?"}, epochs: ${info.training?.epochs ?? "?"}`,
    `recommended strength: ${info.recommended_strength}`,
  ];
  panel.append(el("div", {}, facts.join("\n")));
}

// --- Train Concept: live loss chart, latest previews, summary ---------------------------------
function drawLoss(canvas, losses) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.fillStyle = "#222";
  ctx.fillRect(0, 0, width, height);
  if (losses.length < 2) return;
  const lo = Math.min(...losses), hi = Math.max(...losses), span = hi - lo || 1;
  ctx.strokeStyle = "#6af";
  ctx.beginPath();
  losses.forEach((v, i) => {
    const x = (i / (losses.length - 1)) * (width - 4) + 2;
    const y = height - 2 - ((v - lo) / span) * (height - 4);
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
}

function setupTraining(node) {
  const panel = addPanel(node, "w2s_training", 190);
  const status = el("div", {}, "not started");
  const canvas = el("canvas", { width: "100%", height: "80px", display: "block" });
  canvas.width = 300;
  canvas.height = 80;
  const previews = el("div", { display: "flex", gap: "4px", marginTop: "4px" });
  panel.append(status, canvas, previews);
  const losses = [];
  api.addEventListener(TRAINING_EVENT, ({ detail }) => {
    if (String(detail.node) !== String(node.id)) return;
    if (detail.step !== undefined && detail.loss !== undefined) {
      if (detail.step === 1) losses.length = 0;
      losses.push(detail.loss);
      const eta = Math.round(detail.eta || 0);
      status.textContent = `step ${detail.step}/${detail.total}  loss ${detail.loss.toFixed(4)}  ` +
        `${(detail.images_per_second || 0).toFixed(2)} img/s  ETA ${Math.floor(eta / 60)}m${eta % 60}s`;
      drawLoss(canvas, losses);
    }
    if (Array.isArray(detail.previews)) {
      previews.replaceChildren(...detail.previews.map((b64) => {
        const img = el("img", { width: "64px", height: "64px", objectFit: "cover" });
        img.src = `data:image/png;base64,${b64}`;
        img.alt = `preview at step ${detail.step}`;
        return img;
      }));
    }
    if (detail.summary) {
      const s = detail.summary;
      status.textContent = `done: ${s.steps} steps on ${s.images} images, final loss ` +
        `${Number(s.final_loss).toFixed(4)}, ${s.seconds}s -> ${s.out}`;
    }
  });
}

// --- Heat Map: word chips choose which word's overlay is shown --------------------------------
function showChips(node, panel, words, imagesPerWord) {
  panel.replaceChildren();
  words.forEach((word, k) => {
    const chip = el("button", {
      margin: "2px", padding: "1px 6px", borderRadius: "10px", border: "1px solid #888",
      background: k === 0 ? "#357" : "#333", color: "#eee", cursor: "pointer", font: "11px sans-serif",
    }, word);
    chip.dataset.word = word;
    chip.addEventListener("click", () => {
      node.imageIndex = k;  // overlays come word by word for the first image
      for (const other of panel.children) other.style.background = "#333";
      chip.style.background = "#357";
      node.setDirtyCanvas?.(true, true);
    });
    panel.append(chip);
  });
  node.w2sWordCount = imagesPerWord;
}

// --- per-node hooks: what each of our nodes adds when created and when it has run ---------------
const NODE_HOOKS = {
  W2S_ConceptLoader: {
    created(node) {
      const panel = addPanel(node, "w2s_concept", 150);
      const combo = node.widgets?.find((w) => w.name === "concept_name");
      if (combo) {
        const callback = combo.callback;
        combo.callback = (value, ...rest) => {
          showConcept(node, panel, value);
          return callback?.call(combo, value, ...rest);
        };
        setTimeout(() => showConcept(node, panel, combo.value), 0);
      }
    },
  },
  W2S_TrainConcept: { created: setupTraining },
  W2S_Heatmap: {
    created(node) {
      node.w2sChips = addPanel(node, "w2s_words", 60);
    },
    executed(node, message) {
      const words = Array.isArray(message?.words) ? message.words.map(String) : [];
      if (node.w2sChips) showChips(node, node.w2sChips, words, words.length);
    },
  },
  W2S_Evaluate: {
    // The report (a markdown table) is shown as plain text: file names in it stay text.
    created(node) {
      node.w2sReport = addPanel(node, "w2s_report", 140);
    },
    executed(node, message) {
      const text = Array.isArray(message?.text) ? message.text.map(String).join("\n") : "";
      if (node.w2sReport) node.w2sReport.textContent = text;
    },
  },
};

app.registerExtension({
  name: "Word2Scene.Nodes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const hooks = NODE_HOOKS[nodeData.name];
    if (!hooks) return;
    const onCreated = nodeType.prototype.onNodeCreated;
    const onExecuted = nodeType.prototype.onExecuted;
    if (hooks.created) {
      nodeType.prototype.onNodeCreated = function () {
        const result = onCreated?.apply(this, arguments);
        hooks.created(this);
        return result;
      };
    }
    if (hooks.executed) {
      nodeType.prototype.onExecuted = function (message) {
        onExecuted?.apply(this, arguments);
        hooks.executed(this, message);
      };
    }
  },
});
