#!/usr/bin/env bash
# Install the test dependencies and run the checks and the test suite (what CI runs).
source "$(dirname "$0")/env.sh"
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
"$VENV/bin/ruff" check pipeline tests tests_vllm benchmarks scripts
"$VENV/bin/ruff" format --check pipeline tests tests_vllm benchmarks scripts
"$VENV/bin/mypy"
exec "$VENV/bin/python" -m pytest "$@"
