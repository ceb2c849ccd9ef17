"""The prompt-sharing telemetry counts exactly the characters two prompts share at the start."""

from __future__ import annotations

import random

from emopillars.run.telemetry import PrefixShare, common_prefix_length


def shared_by_walking(first: str, second: str) -> int:
    count = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        count += 1
    return count


def test_common_prefix_length_agrees_with_a_walk_over_the_characters() -> None:
    rng = random.Random(7)
    alphabet = "ab\n é“"
    for _ in range(2000):
        head = "".join(rng.choices(alphabet, k=rng.randrange(0, 60)))
        first = head + "".join(rng.choices(alphabet, k=rng.randrange(0, 20)))
        second = head + "".join(rng.choices(alphabet, k=rng.randrange(0, 20)))
        walked = shared_by_walking(first, second)
        assert common_prefix_length(first, second) == walked
        # A guess only narrows the search, right or wrong, within the texts or past them.
        for guess in (walked, walked + 1, max(0, walked - 1), rng.randrange(0, 90)):
            assert common_prefix_length(first, second, guess) == walked


def test_prefix_share_counts_each_prompt_against_the_one_before() -> None:
    share = PrefixShare()
    for prompt in ("story A: who?", "story A: why?", "other"):
        share.add(prompt)
    assert (share.total, share.shared) == (13 + 13 + 5, 0 + 11 + 0)


def test_prefix_share_agrees_with_a_walk_over_sequences_of_prompts() -> None:
    # Prompts that share heads of many lengths, repeat, end where others go on, or are empty:
    # the shortcut for "as much as the last pair" must never count a character more or less.
    rng = random.Random(11)
    heads = ["", "ab", "ab\né", "ab\néa“b", "b"]
    for _ in range(300):
        prompts = [
            rng.choice(heads) + "".join(rng.choices("ab“", k=rng.randrange(0, 4)))
            for _ in range(rng.randrange(1, 12))
        ]
        share = PrefixShare()
        for prompt in prompts:
            share.add(prompt)
        pairs = zip(["", *prompts], prompts, strict=False)
        assert share.shared == sum(shared_by_walking(a, b) for a, b in pairs), prompts
        assert share.total == sum(map(len, prompts))
