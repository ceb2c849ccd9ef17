#!/usr/bin/env bash
# Install the test dependencies and run the checks and the test suite (what CI runs).
source "$(dirname "$0")/env.sh"
# Not editable: the tests import emopillars as users get it, from site-packages, prompts and
# sample corpus included; a checkout's folders can never stand in for the installed package.
"$VENV/bin/python" -m pip install --quiet ".[test]"
"$VENV/bin/ruff" check pipeline tests tests_vllm benchmarks scripts
"$VENV/bin/ruff" format --check pipeline tests tests_vllm benchmarks scripts
"$VENV/bin/mypy"
exec "$VENV/bin/python" -m pytest "$@"
