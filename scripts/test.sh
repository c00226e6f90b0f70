#!/usr/bin/env bash
# Set up (first time) and run the test suite. Extra arguments go to pytest.
# ComfyUI integration tests run when COMFYUI_PATH points at a ComfyUI checkout (see README).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
