#!/usr/bin/env bash
# Quick start: install emopillars and run the whole method on the sample corpus with the
# embedded CPU model. Extra arguments go to `emopillars run` (e.g. --max-stories 10).
source "$(dirname "$0")/env.sh"
"$VENV/bin/python" -m pip install --quiet .
exec "$VENV/bin/emopillars" run --max-stories 3 --max-actors 2 "$@"
