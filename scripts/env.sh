# Shared by demo.sh and test.sh: one virtual environment, and a lean llama.cpp build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# llama-cpp-python compiles llama.cpp from source. Its multimodal library, tests, examples,
# tools and server are not used here; skipping them makes the build minutes shorter.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
# A native build uses every instruction the CPU reports. Some VMs report AMX without enabling
# it, and llama.cpp then dies with SIGILL at its first matrix product; the small embedded model
# gains nothing from AMX, so it is left out.
if [ "$(uname -m)" = x86_64 ]; then
  export CFLAGS="${CFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  export CXXFLAGS="${CXXFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Built once per checkout with the flags above, into .wheels/, and shared by .venv and
# .venv-vllm; never taken from pip's wheel cache, which may hold a build made with other flags.
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  compgen -G ".wheels/llama_cpp_python-*.whl" >/dev/null \
    || "$VENV/bin/python" -m pip wheel --quiet --no-cache-dir --no-deps -w .wheels \
      "llama-cpp-python>=0.3.7"
  "$VENV/bin/python" -m pip install --quiet .wheels/llama_cpp_python-*.whl
fi
