# Shared by demo.sh and test.sh: one virtual environment, and a lean llama.cpp build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# llama-cpp-python compiles llama.cpp from source. Its multimodal library, tests, examples,
# tools and server are not used here; skipping them makes the build minutes shorter.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
