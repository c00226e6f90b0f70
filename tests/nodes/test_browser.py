"""The frontend in a real browser: Debian chromium driven by Playwright, headless, loopback
only, against a real ComfyUI (COMFYUI_PATH). Every test runs twice: on the frontend that
ComfyUI's requirements pin ("bundled"), and on the newest comfyui-frontend-package with Nodes
2.0 on ("newest": W2S_NEW_FRONTEND_ROOT = that package's static folder, e.g.
`pip install --target DIR comfyui-frontend-package`, then DIR/comfyui_frontend_package/static).
Screenshots go to W2S_ARTIFACTS (default: a temporary folder, printed)."""
import re
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from comfy_harness import PACK_FOLDER_NAME, ROOT, ComfyServer, comfyui_path
from conftest import SHARED

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(comfyui_path() is None, reason="COMFYUI_PATH is not set: no ComfyUI to open in a browser"),
    pytest.mark.skipif(sync_playwright is None, reason="the playwright Python package is not installed"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
]
CONCEPT = "word2scene/test_concept.safetensors"
EVAL_NET = "<img src=x onerror=alert(1)>scenes"  # markup in a file name must show as text
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


NEW_FRONTEND = os.environ.get("W2S_NEW_FRONTEND_ROOT")
FRONTENDS = ["bundled", pytest.param("newest", marks=pytest.mark.skipif(
    not NEW_FRONTEND, reason="W2S_NEW_FRONTEND_ROOT is not set: no newest comfyui-frontend-package to test"))]


@pytest.fixture(scope="module", params=FRONTENDS)
def frontend(request):
    return request.param


@pytest.fixture(scope="module")
def artifacts(frontend):
    folder = Path(os.environ.get("W2S_ARTIFACTS") or tempfile.mkdtemp(prefix="w2s-browser-")) / frontend
    folder.mkdir(parents=True, exist_ok=True)
    print(f"browser screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def server(frontend, tmp_path_factory, sd15_random_checkpoint, sd15_concept_file):
    from PIL import Image

    base = tmp_path_factory.mktemp(f"comfy-browser-{frontend}")
    srv = ComfyServer(base, {"sd15_random.safetensors": sd15_random_checkpoint}, {CONCEPT: sd15_concept_file},
                      front_end_root=Path(NEW_FRONTEND) if frontend == "newest" else None)
    Image.new("RGB", (32, 32), (200, 40, 40)).save(base / "models" / "loras" / "word2scene" / "test_concept.preview.png")
    (base / "input").mkdir(parents=True, exist_ok=True)
    shutil.copy(SHARED / "data" / "rs_scenes" / "church" / "000.jpg", base / "input" / "word2scene_church.jpg")
    for cls in ("airport", "beach"):  # the evaluation workflow's reference and classifier
        shutil.copytree(SHARED / "data" / "rs_scenes" / cls, base / "input" / "word2scene_reference" / cls)
    from word2scene.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier
    from word2scene.evaluation.image_sets import image_set

    clf = train_classifier(image_set(base / "input" / "word2scene_reference", "data"),
                           ClassifierConfig(width=4, input_size=32, epochs=1))
    save_classifier(clf, base / "models" / "word2scene_eval" / f"{EVAL_NET}.safetensors")
    srv.start()
    if frontend == "newest":  # Nodes 2.0: nodes drawn as Vue components, DOM widgets included
        srv.post("/settings/Comfy.VueNodes.Enabled", True)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = context.new_page()
        page.w2s_console = []
        page.on("console", lambda m: page.w2s_console.append((m.type, m.text, m.location.get("url", ""))))
        page.on("pageerror", lambda e: page.w2s_console.append(("pageerror", str(e), "")))
        page.goto(server.url, wait_until="domcontentloaded")
        _wait_for_app(page)
        try:  # the template browser opens on a first visit, once the app has settled
            page.wait_for_function(f"() => document.querySelector('[role=dialog]')?.textContent.includes('{PACK_FOLDER_NAME}')",
                                   timeout=15_000)
        except Exception:  # noqa: BLE001 - the test that needs it says what was there
            pass
        page.w2s_first_dialog = page.locator("[role=dialog]").all_text_contents()
        page.keyboard.press("Escape")  # the template browser opens on a first visit
        page.wait_for_timeout(500)
        yield page
        browser.close()


APP = "(window.app || window.comfyAPI.app.app)"


def _wait_for_app(page):
    page.wait_for_function("() => (window.app || window.comfyAPI?.app?.app)?.graph", timeout=60_000)
    page.wait_for_timeout(1500)


def _reload(page):
    """A page reload: ComfyUI restores the open workflow from the browser's storage."""
    page.reload(wait_until="domcontentloaded")
    _wait_for_app(page)
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)


def _our_errors(page):
    """Console errors from our extension's code or its routes (not, say, a missing input image)."""
    return [c for c in page.w2s_console if c[0] in ("error", "pageerror")
            and (PACK_FOLDER_NAME in c[1] + c[2] or "/word2scene/" in c[1] + c[2] or "Word2Scene" in c[1])]


def _load(page, workflow: dict):
    page.evaluate(f"wf => {APP}.loadGraphData(wf)", workflow)
    page.wait_for_timeout(800)


# Every node's box, title included, in graph units: the classic canvas sizes nodes itself, and
# Nodes 2.0 writes the size its DOM element takes (panels, images) back into the node.
BOXES = f"() => {APP}.graph._nodes.map(n => [String(n.id), n.type, ...n.getBounding()])"


def _overlaps(page) -> list:
    """Pairs of nodes whose boxes overlap (more than a pixel)."""
    boxes = page.evaluate(BOXES)
    assert boxes and all(b[4] > 0 and b[5] > 0 for b in boxes), boxes
    found = []
    for i, (a, at, ax, ay, aw, ah) in enumerate(boxes):
        for b, bt, bx, by, bw, bh in boxes[i + 1:]:
            if min(ax + aw, bx + bw) - max(ax, bx) > 1 and min(ay + ah, by + bh) - max(ay, by) > 1:
                found.append((f"{at}#{a}", f"{bt}#{b}"))
    return found


def _panel_survives_reload(page, name: str, marker: str) -> None:
    """After a page reload, our panel `name` shows exactly what it showed before."""
    before = page.locator(f"[data-w2s='{name}']").first.text_content()
    _reload(page)
    page.wait_for_function(f"() => document.querySelector(\"[data-w2s='{name}']\")?.textContent.includes({json.dumps(marker)})",
                           timeout=15_000)
    assert page.locator(f"[data-w2s='{name}']").first.text_content() == before


def _record_training(page):
    """Keep every training message the page receives, in order (window.w2sTraining)."""
    page.evaluate("""() => { window.w2sTraining = [];
        window.comfyAPI.api.api.addEventListener('word2scene.training', ({ detail }) => window.w2sTraining.push(detail)); }""")


def test_template_browser_lists_our_workflows(page):
    templates = page.evaluate("() => fetch('/api/workflow_templates').then(r => r.json())")
    assert sorted(templates[PACK_FOLDER_NAME]) == sorted(p.stem for p in (ROOT / "workflows").glob("*.json"))
    assert any(PACK_FOLDER_NAME in text for text in page.w2s_first_dialog)


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.json")), ids=lambda p: p.name)
def test_every_workflow_loads_without_missing_nodes(page, artifacts, path):
    workflow = json.loads(path.read_text())
    _load(page, workflow)
    missing = page.evaluate(f"() => {APP}.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type)")
    assert missing == []
    count = page.evaluate(f"() => {APP}.graph._nodes.length")
    assert count == len(workflow["nodes"])
    assert not page.get_by_text("missing", exact=False).filter(has_text="node").is_visible()
    assert _overlaps(page) == []
    page.screenshot(path=str(artifacts / f"{path.stem}.png"))
    assert not _our_errors(page), _our_errors(page)


def _concept_panel_text(page):
    page.wait_for_function("() => document.querySelector(\"[data-w2s='w2s_concept']\")?.textContent.includes('trigger words')",
                           timeout=15_000)
    return page.locator("[data-w2s='w2s_concept']").first.text_content()


def test_concept_loader_shows_thumbnail_and_metadata(page, server, artifacts):
    workflow = json.loads((ROOT / "workflows" / "word2scene_one_word_scene.json").read_text())
    for node in workflow["nodes"]:
        if node["type"] == "W2S_ConceptLoader":
            node["widgets_values"] = [CONCEPT]
    _load(page, workflow)
    panel = page.locator("[data-w2s='w2s_concept']")
    panel.first.wait_for(timeout=15_000)
    text = _concept_panel_text(page)
    # the server's own text (Concept.describe), shown as it is
    server_text = page.evaluate("n => fetch('/word2scene/concept?name=' + encodeURIComponent(n)).then(r => r.json())", CONCEPT)["text"]
    assert text == server_text
    assert "trigger words: gs, geographic scene" in text and "rank 4" in text
    assert panel.first.locator("img").count() == 1
    assert panel.first.locator("img").evaluate("img => img.complete && img.naturalWidth") == 32
    page.screenshot(path=str(artifacts / "concept_loader.png"))
    _reload(page)  # the saved choice comes back with its metadata
    assert _concept_panel_text(page) == server_text
    assert not _our_errors(page), _our_errors(page)


def test_concept_loader_latest_choice_wins(page, server):
    workflow = json.loads((ROOT / "workflows" / "word2scene_one_word_scene.json").read_text())
    _load(page, workflow)
    # a missing file's error, then the real file at once: the panel ends on the real one
    page.evaluate(f"""() => {{
        const node = {APP}.graph._nodes.find(n => n.type === 'W2S_ConceptLoader');
        const combo = node.widgets.find(w => w.name === 'concept_name');
        combo.callback('no/such/file.safetensors');
        combo.value = '{CONCEPT}';
        combo.callback('{CONCEPT}');
    }}""")
    text = _concept_panel_text(page)
    page.wait_for_timeout(1000)
    assert "trigger words" in text and "no/such" not in page.locator("[data-w2s='w2s_concept']").first.text_content()


def test_queue_the_generation_workflow_by_clicking(page, server, artifacts):
    workflow = json.loads((ROOT / "workflows" / "word2scene_one_word_scene.json").read_text())
    for node in workflow["nodes"]:
        if node["type"] == "CheckpointLoaderSimple":
            node["widgets_values"] = ["sd15_random.safetensors"]
        elif node["type"] == "W2S_ConceptLoader":
            node["widgets_values"] = [CONCEPT]
        elif node["type"] == "EmptyLatentImage":
            node["widgets_values"] = [64, 64, 1]
        elif node["type"] == "KSampler":
            node["widgets_values"][2] = 2
    _load(page, workflow)
    before = len(list((server.base / "output").rglob("*.png"))) if (server.base / "output").exists() else 0
    _run_button(page).click()
    page.wait_for_function(f"() => {APP}.graph._nodes.some(n => n.type === 'SaveImage' && n.imgs && n.imgs.length)",
                           timeout=300_000)
    after = len(list((server.base / "output").rglob("*.png")))
    assert after == before + 1
    page.screenshot(path=str(artifacts / "queued_generation.png"))
    assert not _our_errors(page), _our_errors(page)


def _set_widgets(workflow: dict, node_type: str, **values):
    """Set named widget values of every node of a type in a UI-format workflow (by input order)."""
    for node in workflow["nodes"]:
        if node["type"] == node_type:
            for index, value in values.items():
                node["widgets_values"][int(index.lstrip("_"))] = value


def _run_button(page):
    """The toolbar's Run button (the newest frontend also has hidden buttons that say "Queue")."""
    return page.locator("button:visible", has_text="Run").first


def _run_and_wait(page, node_type: str, predicate_js: str, timeout=600_000):
    _run_button(page).click()
    page.wait_for_function(predicate_js, timeout=timeout)


def test_training_node_shows_its_phases_loss_chart_and_summary(page, server, artifacts):
    data = server.base / "input" / "w2s_airport"
    (data / "airport").mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (SHARED / "data" / "rs_scenes" / "captions.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["class"] == "airport"][:4]
    for r in rows:
        shutil.copy(SHARED / "data" / "rs_scenes" / r["file"], data / r["file"])
    (data / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    workflow = json.loads((ROOT / "workflows" / "word2scene_train_then_generate.json").read_text())
    # widget order: ckpt, dataset, concepts, triggers, steps, epochs, rank, alpha, lr, batch, resolution,
    # seed, control, save_name, preview_every, resume, module_set, text_encoder, save_every, preview_steps, overwrite,
    # save_every_epoch
    _set_widgets(workflow, "W2S_TrainConcept", _0="sd15_random.safetensors", _1="w2s_airport", _4=3, _6=4, _7=4.0,
                 _10=64, _13="browser_concept", _14=1, _18=0, _19=2)
    _set_widgets(workflow, "CheckpointLoaderSimple", _0="sd15_random.safetensors")
    _set_widgets(workflow, "EmptyLatentImage", _0=64, _1=64)
    _set_widgets(workflow, "KSampler", _2=2)
    _load(page, workflow)
    _record_training(page)
    _run_and_wait(page, "W2S_TrainConcept",
                  "() => document.querySelector(\"[data-w2s='w2s_training']\")?.textContent.includes('done: 3 steps')")
    phases = [m.get("phase") for m in page.evaluate("() => window.w2sTraining") if m.get("phase")]
    seen = list(dict.fromkeys(phases))
    assert seen == ["loading", "encoding", "training", "previews", "saving", "done"], phases
    assert phases[-2:] == ["saving", "done"]  # the final previews, then saving: never a frozen "ETA 0m0s"
    panel = page.locator("[data-w2s='w2s_training']").first
    done = panel.text_content()
    assert "-> loras/word2scene/browser_concept.safetensors" in done and str(server.base) not in done
    assert panel.locator("img").count() >= 1  # the latest previews
    assert _loss_line_drawn(panel) and _axis_labels_drawn(panel)
    page.screenshot(path=str(artifacts / "training_node.png"))
    assert (server.base / "models" / "loras" / "word2scene" / "browser_concept.safetensors").is_file()
    assert _overlaps(page) == []  # the loss curve and previews shown after the run cover no node
    _reload(page)  # the chart, the status and the previews come back
    panel = page.locator("[data-w2s='w2s_training']").first
    panel.wait_for(timeout=15_000)
    assert "done: 3 steps" in panel.text_content()
    assert _loss_line_drawn(panel) and panel.locator("img").count() >= 1
    assert not _our_errors(page), _our_errors(page)


def test_training_node_reports_an_error_as_its_phase(page, server):
    workflow = json.loads((ROOT / "workflows" / "word2scene_train_then_generate.json").read_text())
    _set_widgets(workflow, "W2S_TrainConcept", _0="sd15_random.safetensors", _1="no_such_folder", _4=2, _10=64,
                 _13="failing_concept")
    workflow["nodes"] = [n for n in workflow["nodes"] if n["type"] in ("W2S_TrainConcept", "PreviewImage", "Note")]
    workflow["links"] = [l for l in workflow["links"] if l[1] == 2 and l[3] in (10, 11)]
    for node in workflow["nodes"]:
        for out in node["outputs"]:
            out["links"] = [l for l in out["links"] if any(k[0] == l for k in workflow["links"])]
    _load(page, workflow)
    _run_button(page).click()
    page.wait_for_function("() => document.querySelector(\"[data-w2s='w2s_training']\")?.textContent.startsWith('error:')",
                           timeout=120_000)
    status = page.locator("[data-w2s='w2s_training'] div").first
    text = status.text_content()
    assert text.startswith("error: dataset: input/no_such_folder is not a folder"), text
    assert str(server.base) not in text and status.get_attribute("data-phase") == "error"
    page.keyboard.press("Escape")  # the error dialog


def _axis_labels_drawn(panel) -> bool:
    """Text pixels left of the chart's y axis (the loss values) and under its x axis (the steps)."""
    return panel.locator("canvas").evaluate("""c => {
        const ctx = c.getContext('2d');
        const lit = (x, y, w, h) => Array.from(ctx.getImageData(x, y, w, h).data).some((v, i) => i % 4 < 3 && v > 150);
        return lit(0, 14, 44, c.height - 32) && lit(46, c.height - 16, c.width - 54, 16);
    }""")


def _loss_line_drawn(panel) -> bool:
    return panel.locator("canvas").evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).some((v, i) => i % 4 == 2 && v > 200)")


def test_training_messages_reach_only_their_node(page):
    """One listener for the page, routed by node id: two Train Concept nodes, each its own chart."""
    workflow = json.loads((ROOT / "workflows" / "word2scene_train_then_generate.json").read_text())
    for _ in range(3):  # loading the workflow again must not add listeners
        _load(page, workflow)
    ids = page.evaluate(f"""() => {{
        const graph = {APP}.graph;
        const first = graph._nodes.find(n => n.type === 'W2S_TrainConcept');
        const second = LiteGraph.createNode('W2S_TrainConcept');
        graph.add(second);
        return [first.id, second.id];
    }}""")
    page.evaluate("""id => {
        const send = (detail) => window.comfyAPI.api.api.dispatchEvent(new CustomEvent('word2scene.training', { detail }));
        send({ node: String(id), step: 1, total: 2, loss: 0.5, eta: 1, images_per_second: 1 });
        send({ node: String(id), step: 2, total: 2, loss: 0.25, eta: 0, images_per_second: 1 });
    }""", ids[0])
    views = page.evaluate(f"""ids => ids.map(id => {APP}.graph.getNodeById(id).properties?.w2s_view ?? null)""", ids)
    assert views[0]["losses"] == [0.5, 0.25]  # each message once: one listener
    assert views[0]["status"].startswith("training: step 2/2")
    assert views[1] is None


def _overlay(page) -> dict:
    return page.locator("[data-w2s='w2s_overlay']").first.evaluate(
        "img => ({src: img.getAttribute('src') || '', word: img.dataset.word, width: img.complete ? img.naturalWidth : 0})")


def test_heatmap_node_word_chips_show_their_overlay(page, artifacts):
    workflow = json.loads((ROOT / "workflows" / "word2scene_interpretability.json").read_text())
    _set_widgets(workflow, "CheckpointLoaderSimple", _0="sd15_random.safetensors")
    _set_widgets(workflow, "W2S_ConceptLoader", _0=CONCEPT)
    _set_widgets(workflow, "EmptyLatentImage", _0=64, _1=64)
    prompt = "gs, geographic scene, a church with a blue roof near red buildings and a church"
    _set_widgets(workflow, "W2S_KSamplerHeatmaps", _2=2, _7=prompt)
    [positive] = [n for n in workflow["nodes"] if n["id"] == 4]
    positive["widgets_values"][0] = prompt
    [heatmap] = [n for n in workflow["nodes"] if n["id"] == 9]
    heatmap["widgets_values"][0] = ""  # every content word, the repeated "church" twice
    _load(page, workflow)
    _run_and_wait(page, "W2S_Heatmap",
                  "() => document.querySelectorAll(\"[data-w2s='w2s_words'] button\").length >= 9")
    chips = page.locator("[data-w2s='w2s_words']").first.locator("button")
    labels = chips.all_text_contents()
    assert labels[:3] == ["gs", "geographic", "scene"] and labels.count("church") == 1 and "church#2" in labels
    # a repeated word's chip says in words which one it is (the label is the words input's notation)
    assert "2nd “church”" in chips.nth(labels.index("church#2")).get_attribute("title")
    page.wait_for_function("() => document.querySelector(\"[data-w2s='w2s_overlay']\")?.naturalWidth > 0")
    first = _overlay(page)
    assert first["word"] == labels[0] and "/view?" in first["src"] and first["width"] == 64
    chips.nth(2).click()
    page.wait_for_function("() => document.querySelector(\"[data-w2s='w2s_overlay']\")?.complete")
    second = _overlay(page)
    assert second["word"] == labels[2] and second["src"] != first["src"] and second["width"] == 64
    page.screenshot(path=str(artifacts / "heatmap_chips.png"))
    assert _overlaps(page) == []
    _reload(page)  # chips, the chosen word and its overlay come back
    page.locator("[data-w2s='w2s_words'] button").first.wait_for(timeout=15_000)
    assert page.locator("[data-w2s='w2s_words']").first.locator("button").all_text_contents() == labels
    page.wait_for_function("() => document.querySelector(\"[data-w2s='w2s_overlay']\")?.naturalWidth > 0")
    assert _overlay(page) == second
    assert not _our_errors(page), _our_errors(page)


def test_evaluate_node_draws_its_report_as_a_table(page, artifacts):
    workflow = json.loads((ROOT / "workflows" / "word2scene_evaluate.json").read_text())
    _set_widgets(workflow, "CheckpointLoaderSimple", _0="sd15_random.safetensors")
    _set_widgets(workflow, "W2S_ConceptLoader", _0=CONCEPT)
    _set_widgets(workflow, "EmptyLatentImage", _0=64, _1=64, _2=2)
    _set_widgets(workflow, "KSampler", _2=2)
    _set_widgets(workflow, "W2S_Evaluate", _2=f"{EVAL_NET}.safetensors")
    _load(page, workflow)
    _run_and_wait(page, "W2S_Evaluate",
                  "() => document.querySelector(\"[data-w2s='w2s_report']\")?.textContent.includes('GSHPS')")
    panel = page.locator("[data-w2s='w2s_report']").first
    text = panel.text_content()
    rows = panel.locator("table").first.evaluate("t => Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.textContent))")
    assert rows[0][:3] == ["scope", "generated", "reference"]
    assert re.fullmatch(rf"GSHPS \[scene-cnn \d+ px \({re.escape(EVAL_NET)}\.safetensors, sha256 [0-9a-f]{{12}}\)\]", rows[0][3])
    assert rows[1][:3] == ["airport", "2", "25"] and "|" not in text
    assert panel.locator("img").count() == 0  # cells are text, never parsed as HTML
    assert "Warning: FID from 2 images is not a measurement" in text  # too few images for the features
    assert "Feature network check:" in text
    assert _overlaps(page) == []
    page.screenshot(path=str(artifacts / "evaluate_node.png"))
    _panel_survives_reload(page, "w2s_report", "GSHPS")
    assert not _our_errors(page), _our_errors(page)


def test_mini_workflow_runs_as_shipped_and_shows_its_prompt(page, server, frontend, artifacts):
    """The template a new user opens first: nothing to pick, Run, a 128 px scene named after
    its word, the Scene Prompt's prompt and report on the node, heat-map chips, no overlap."""
    workflow = json.loads((ROOT / "workflows" / "word2scene_mini_scene.json").read_text())
    _load(page, workflow)
    out = server.base / "output" / "word2scene"
    before = set(out.glob("airport_*.png")) if out.exists() else set()
    _run_button(page).click()
    page.wait_for_function(f"() => {APP}.graph._nodes.some(n => n.type === 'SaveImage' && n.imgs && n.imgs.length)",
                           timeout=300_000)
    page.wait_for_function("() => document.querySelectorAll(\"[data-w2s='w2s_words'] button\").length === 4")
    [saved] = set(out.glob("airport_*.png")) - before
    from PIL import Image

    with Image.open(saved) as image:
        assert image.size == (128, 128)
    prompt_panel = page.locator("[data-w2s='w2s_prompt']").first
    text = prompt_panel.text_content()
    assert "positive: gs, geographic scene, airport" in text and "negative: (empty)" in text
    assert "'airport' -> airport (exact)" in text
    assert page.locator("[data-w2s='w2s_words'] button").all_text_contents() == ["gs", "geographic", "scene", "airport"]
    page.wait_for_timeout(1000)
    assert _overlaps(page) == []
    page.screenshot(path=str(artifacts / "mini_scene_after_run.png"))
    _panel_survives_reload(page, "w2s_prompt", "airport (exact)")
    assert not _our_errors(page), _our_errors(page)


def test_display_panels_are_no_parameters(page, frontend):
    """Our panels show results on the node; Nodes 2.0's side panel lists parameters, so they are
    hidden there (the newest frontend's own visibility model says so; the bundled one has no such panel)."""
    workflow = json.loads((ROOT / "workflows" / "word2scene_mini_scene.json").read_text())
    _load(page, workflow)
    panels = page.evaluate(f"""() => {APP}.graph._nodes.flatMap(n => (n.widgets || [])
        .filter(w => String(w.name).startsWith('w2s_'))
        .map(w => ({{name: w.name, hide: w.options?.hideInPanel === true, panel: w._visibility?.surfaces?.panel ?? null}})))""")
    assert sorted(p["name"] for p in panels) == ["w2s_concept", "w2s_prompt", "w2s_words"]
    assert all(p["hide"] for p in panels), panels
    if frontend == "newest":
        assert all(p["panel"] == "never" for p in panels), panels
