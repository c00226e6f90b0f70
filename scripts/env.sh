# Sourced by run.sh and test.sh: make .venv with everything the project needs (once;
# again when requirements.txt or pyproject.toml change). torch 2.13.0 is the CPU build;
# set W2S_TORCH to install another (e.g. "torch==2.14.1 torchvision==0.29.1").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${W2S_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.w2s-installed"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "word2scene: installing into $VENV (first run only)..." >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check ${W2S_TORCH:-torch==2.13.0} >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt" pytest nltk torchmetrics pycocoevalcap >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT" >&2
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
