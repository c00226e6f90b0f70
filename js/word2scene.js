// Word2Scene frontend: presentation only. Text from files is shown as text, never HTML.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const METADATA_WIDGET = "w2s_metadata";

function showText(node, text) {
  let widget = node.widgets?.find((w) => w.name === METADATA_WIDGET);
  if (!widget) {
    widget = ComfyWidgets.STRING(node, METADATA_WIDGET, ["STRING", { multiline: true }], app).widget;
    widget.serialize = false;
    widget.options = { ...(widget.options ?? {}), serialize: false };
    if (widget.inputEl) {
      widget.inputEl.readOnly = true;
      widget.inputEl.style.opacity = 0.8;
    }
  }
  widget.value = text;
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "Word2Scene.ConceptMetadata",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "W2S_ConceptLoader") return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const lines = Array.isArray(message?.text) ? message.text : [];
      showText(this, lines.map(String).join("\n"));
    };
  },
});
