"""The simulated GPU engine of benchmarks/ (simulated_engine.py): its time model on cases
computed by hand, and its Engine interface on real stage requests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conformance import check_conformance, conformance_batch
from emopillars.config import RunConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from simulated_engine import (
    ContinuousBatcher,
    GpuModel,
    Job,
    Lengths,
    SimulatedEngine,
    simulate,
)

MS = 0.001
MODEL = GpuModel()  # 256 slots, a step of 12 ms + 0.05 ms per active sequence, 30K prefill/s


def test_two_requests_share_steps_until_the_shorter_ends() -> None:
    # Steps 1-3 decode both (12.1 ms each); steps 4-5 the longer alone (12.05 ms each).
    finishes = simulate(MODEL, [Job(0.0, 3), Job(0.0, 5)])
    assert finishes == pytest.approx([3 * 12.1 * MS, (3 * 12.1 + 2 * 12.05) * MS])


def test_slots_make_requests_wait() -> None:
    one_slot = GpuModel(slots=1)
    finishes = simulate(one_slot, [Job(0.0, 3), Job(0.0, 5)])
    assert finishes == pytest.approx([3 * 12.05 * MS, 8 * 12.05 * MS])


def test_the_joining_step_pays_the_prefill() -> None:
    # 600 prompt tokens at 30,000 tokens/s: 20 ms more on the first step.
    finishes = simulate(MODEL, [Job(0.0, 3, 300), Job(0.0, 5, 300)])
    first = (12.1 + 20.0) * MS
    assert finishes == pytest.approx([first + 2 * 12.1 * MS, first + (2 * 12.1 + 2 * 12.05) * MS])


def test_a_late_request_joins_at_the_next_step_boundary() -> None:
    # The first runs alone (12.05 ms steps); the second arrives at 20 ms, joins at the step
    # boundary at 24.1 ms, and both finish after two shared steps (12.1 ms each).
    finishes = simulate(MODEL, [Job(0.0, 4), Job(0.020, 2)])
    assert finishes == pytest.approx([48.3 * MS, 48.3 * MS])
    # An engine left idle waits for the next arrival.
    assert simulate(MODEL, [Job(0.0, 1), Job(1.0, 1)]) == pytest.approx([12.05 * MS, 1.01205])


def test_the_batcher_step_by_step_matches_the_timeline() -> None:
    batcher = ContinuousBatcher(MODEL)
    first, second = batcher.submit(3), batcher.submit(5)
    assert batcher.next_finished() == [first]
    assert batcher.now == pytest.approx(36.3 * MS)
    assert batcher.next_finished() == [second] and batcher.next_finished() == []
    assert batcher.now == pytest.approx(60.4 * MS) and batcher.idle


def test_an_always_full_engine_is_the_ideal() -> None:
    # 256 requests of 10 tokens fill every slot: occupancy 1.
    finishes = simulate(MODEL, [Job(0.0, 10)] * 256)
    assert max(finishes) == pytest.approx(MODEL.ideal_s(2560, 0))
    assert MODEL.ideal_s(256, 0) == pytest.approx(24.8 * MS)


def test_the_engine_answers_every_request_and_keeps_the_time() -> None:
    config = RunConfig(engine="fake", max_actors=3)
    lengths = Lengths(shape="fixed")
    engine = SimulatedEngine(config, lengths=lengths)
    batch = conformance_batch("fake")  # actors, labels, clean, rewrite requests
    assert check_conformance(engine, batch) == ["valid"] * len(batch)
    stages = [engine.stage_of(request) for request in batch]
    assert stages == ["actors", "labels", "contexts", "rewrites"]
    # One call: all arrive together; the clock is the simulated time of that timeline.
    tokens = [
        min(lengths.means[s], r.sampling.max_tokens) for s, r in zip(stages, batch, strict=True)
    ]
    work = engine.work
    prefill = [work[s].prefill_tokens for s in stages]
    assert [work[s].completion_tokens for s in stages] == tokens
    jobs = [Job(0.0, int(t), p) for t, p in zip(tokens, prefill, strict=True)]
    assert engine.clock_s == pytest.approx(max(simulate(MODEL, jobs)))
    assert 0 < engine.occupancy < 0.05  # four requests in 256 slots


def test_skewed_lengths_keep_their_mean() -> None:
    lengths = Lengths(shape="exponential")
    draws = [lengths.draw("labels", f"key-{i}", 10_000) for i in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(35, rel=0.08)
    assert max(draws) > 4 * 35
    assert Lengths(shape="fixed").draw("utterances", "k", 100) == 100  # max_tokens caps it
