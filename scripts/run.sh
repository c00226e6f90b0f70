#!/usr/bin/env bash
# Set up (first time) and run the word2scene CLI. With no arguments: one word -> one scene
# on the built-in Word2Scene-mini, at its defaults. Example: bash scripts/run.sh generate airport --out airport.png
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
cd "$ROOT"
if [ "$#" -eq 0 ]; then
  set -- generate airport --out outputs/airport_demo.png --overwrite
fi
exec "$VENV/bin/python" -m word2scene "$@"
