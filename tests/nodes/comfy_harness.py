"""A real ComfyUI beside the project, for integration tests.

COMFYUI_PATH: a ComfyUI checkout (never part of this repo). COMFYUI_PYTHON: the Python
that runs it (a venv with ComfyUI's requirements and torchvision; default: this one).
The server runs headless on 127.0.0.1 with a temporary base directory; the pack is linked
into its custom_nodes under a folder name unlike the repo's, since any name must work.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDER_NAME = "word2scene-pack-under-test"  # not a Python identifier: the import must be path-derived
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote"}  # drawn by the frontend, never sent to the server


def comfyui_path() -> Path | None:
    value = os.environ.get("COMFYUI_PATH")
    return Path(value) if value else None


def comfyui_python() -> str:
    return os.environ.get("COMFYUI_PYTHON", sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """Start ComfyUI in its own process group; stop it by PID."""

    def __init__(self, base: Path, checkpoints: dict[str, Path] = {}, loras: dict[str, Path] = {},
                 front_end_root: Path | None = None):
        self.base = base
        self.front_end_root = front_end_root
        self.port = free_port()
        for folder, files in (("checkpoints", checkpoints), ("loras", loras)):
            for name, src in files.items():
                dest = base / "models" / folder / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(Path(src).resolve())
        (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (base / "custom_nodes" / PACK_FOLDER_NAME).symlink_to(ROOT)
        self.log_path = base / "comfyui.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> "ComfyServer":
        log = open(self.log_path, "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [comfyui_python(), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--disable-auto-launch", "--base-directory", str(self.base)]
            + (["--front-end-root", str(self.front_end_root)] if self.front_end_root else []),
            cwd=comfyui_path(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = r.read()
                return json.loads(body) if body.strip() else {}
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"POST {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from None

    def run_prompt(self, prompt: dict, timeout: float = 600) -> dict:
        """Queue an API-format graph and wait for its history entry."""
        prompt_id = self.post("/prompt", {"prompt": prompt, "client_id": "w2s-tests"})["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history:
                entry = history[prompt_id]
                status = entry.get("status", {})
                if status.get("completed") or status.get("status_str") in ("success", "error"):
                    return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running a prompt:\n{self.log()[-4000:]}")
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow (what drag and drop loads) to the API format /prompt takes."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0 or node["type"] in FRONTEND_ONLY:
            continue
        info = object_info[node["type"]]["input"]
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for group in ("required", "optional"):
            for name, spec in info.get(group, {}).items():
                kind = spec[0]
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                is_widget = isinstance(kind, list) or kind in WIDGET_TYPES
                if is_widget and values:
                    value = values.pop(0)
                    if options.get("control_after_generate") or (kind == "INT" and name in ("seed", "noise_seed")):
                        values.pop(0)
                    inputs[name] = value
                if name in linked:
                    link = linked[name]
                    inputs[name] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def pack_errors(log: str) -> list[str]:
    """Tracebacks and import failures in a ComfyUI log that involve our pack (ComfyUI's own
    optional nodes failing for a missing torchaudio are not ours)."""
    ours = (PACK_FOLDER_NAME, str(ROOT))
    found = []
    lines = log.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Traceback"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                j += 1
            block = "\n".join(lines[i:j + 3])  # frames, the exception, ComfyUI's "Cannot import ..." line
            if any(o in block for o in ours):
                found.append(block)
            i = j
        elif "IMPORT FAILED" in line and any(o in line for o in ours):
            found.append(line)
        i += 1
    return found


def comfy_ddim_uniform_timesteps(steps: int) -> list[int]:
    """The timesteps ComfyUI's `ddim_uniform` scheduler visits on SD1.5's 1,000 (comfy/samplers.py,
    ddim_scheduler): every (1000 // steps)-th from 1 up, highest first. For 30 steps that is 31
    steps from t = 991; test_comfyui checks this mirror against a real ComfyUI."""
    return list(range(1, 1000, max(1000 // steps, 1)))[::-1]
