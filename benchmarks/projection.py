"""Project GPU-hours for the paper-scale run (2,000 plots, ~15 actors each, ~10 utterances
per actor) from a run folder's measured requests and tokens, and a stated decode speed.

    python benchmarks/projection.py RUN_DIR [--decode-tps 2500 6000] [--prefill-tps 30000]

Per-request token counts come from the run's manifest (measured); the speeds are inputs, not
measurements: the defaults are the planning range for a 7-8B model on one H100 with vLLM at
large batch (2.5-6K output tokens/s), and an assumed prefill speed for the prompt tokens a
prefix cache cannot reuse (the run's measured prefix-shared fraction).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emopillars.run.layout import RunLayout
from emopillars.run.plan import read_plan
from emopillars.run.status import stage_totals

PAPER_PLOTS, PAPER_ACTORS, PAPER_UTTERANCES = 2_000, 15, 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--decode-tps", type=float, nargs="+", default=[2500.0, 6000.0])
    parser.add_argument("--prefill-tps", type=float, default=30_000.0)
    args = parser.parse_args()
    totals = stage_totals(args.run_dir)
    stories = read_plan(RunLayout(args.run_dir))["stories"]

    # Scale each stage by its own unit: stories, actors, utterances (labels, contexts, rewrites).
    paper_units = {
        "actors": PAPER_PLOTS,
        "utterances": PAPER_PLOTS * PAPER_ACTORS,
        "labels": PAPER_PLOTS * PAPER_ACTORS * PAPER_UTTERANCES,
        "contexts": PAPER_PLOTS * PAPER_ACTORS * PAPER_UTTERANCES,
        "rewrites": PAPER_PLOTS * PAPER_ACTORS * PAPER_UTTERANCES,
    }
    print(f"measured on {args.run_dir} ({stories} stories); scaled to the paper's run")
    print(f"{'stage':<11}{'req/unit':>9}{'out_tok/req':>12}{'in_tok/req':>11}{'shared':>8}"
          f"{'paper_req':>11}{'paper_out_tok':>15}")  # fmt: skip
    out_tokens = uncached_prompt = requests = 0.0
    for name, t in totals.items():
        sent = t.requests_sent + t.requests_replayed
        if not t.inputs or not sent:
            continue
        per_unit = sent / t.inputs
        paper_requests = per_unit * paper_units[name]
        out_per, in_per = t.completion_tokens / sent, t.prompt_tokens / sent
        requests += paper_requests
        out_tokens += paper_requests * out_per
        uncached_prompt += paper_requests * in_per * (1 - t.prefix_shared)
        print(f"{name:<11}{per_unit:>9.2f}{out_per:>12.0f}{in_per:>11.0f}{t.prefix_shared:>8.0%}"
              f"{paper_requests:>11,.0f}{paper_requests * out_per:>15,.0f}")  # fmt: skip
    print(f"total requests {requests:,.0f}; output tokens {out_tokens:,.0f}; "
          f"uncached prompt tokens {uncached_prompt:,.0f}")  # fmt: skip
    for tps in args.decode_tps:
        hours = (out_tokens / tps + uncached_prompt / args.prefill_tps) / 3600
        print(f"at {tps:,.0f} output tok/s and {args.prefill_tps:,.0f} prefill tok/s: "
              f"{hours:,.1f} H100-hours")  # fmt: skip


if __name__ == "__main__":
    main()
