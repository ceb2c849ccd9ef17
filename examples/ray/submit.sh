#!/bin/bash
# Submit an emopillars run to an existing Ray cluster as a Ray job. The entrypoint (the
# driver, on the head node) plans the run, sends one task per story shard to the cluster,
# each with one GPU and its own vLLM engine, and assembles the dataset when all are done.
#
# Every node needs emopillars with the vllm extra (for instance the image built from the
# Dockerfile) and the same shared folder mounted at /shared; this machine needs the Ray
# job CLI (pip install 'ray[default]'). Give the workers their Hugging Face token through
# their environment (or a pre-filled HF cache), not through the job's runtime_env, which
# the dashboard shows.
#   RAY_ADDRESS=http://head-node:8265 CORPUS=/shared/data/plots.jsonl \
#       RUN_DIR=/shared/emopillars/plots bash examples/ray/submit.sh
#
# Each task loads the model once for its shard: large shards (--shard-size 64) keep that
# cost small. A failed task is reported by shard; run the same job again to resume.
set -euo pipefail

: "${RAY_ADDRESS:=http://127.0.0.1:8265}"  # the head node's job server (dashboard port)
export RAY_ADDRESS
: "${CORPUS:?set CORPUS to your stories, on the shared filesystem}"
: "${RUN_DIR:?set RUN_DIR to the run folder, on the shared filesystem}"

ray job submit --address "$RAY_ADDRESS" -- \
    emopillars run --executor ray \
    --engine vllm --model mistralai/Mistral-7B-Instruct-v0.2 \
    --corpus "$CORPUS" --output "$RUN_DIR" \
    --shard-size 64 --max-actors 15
