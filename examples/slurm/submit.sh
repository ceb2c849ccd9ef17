#!/bin/bash
# Queue the workers (array.sbatch) and, after all of them succeed, the assembly:
#   RUN_DIR=/shared/emopillars/plots CORPUS=/shared/data/plots.jsonl bash examples/slurm/submit.sh
# If a task fails, the assemble job is cancelled (its dependency can no longer be met):
# resubmit the failed tasks (sbatch --array=I,J array.sbatch), then run
# `emopillars assemble "$RUN_DIR"` once they are done; it lists any shard still missing.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
: "${RUN_DIR:?set RUN_DIR to the run folder, on a filesystem every node mounts}"
: "${CORPUS:?set CORPUS to your stories}"
export RUN_DIR CORPUS

workers="$(sbatch --parsable "$here/array.sbatch")"
workers="${workers%%;*}"  # --parsable prints "jobid" or "jobid;cluster"

# afterok on the array's job id waits for every task, and needs each to exit with 0.
sbatch --parsable \
    --dependency="afterok:$workers" --kill-on-invalid-dep=yes \
    --job-name=emopillars-assemble --cpus-per-task=2 --mem=16G --time=01:00:00 \
    --output=emopillars-assemble-%j.log \
    --wrap="emopillars assemble $(printf '%q' "$RUN_DIR")"
echo "queued the workers (job $workers) and the assembly after them"
