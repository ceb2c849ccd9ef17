"""The fast gates and stage parsers say exactly what the first, plain ones said.

The plain implementations are kept here verbatim (as `_old_*`): the fast ones must return the
same values, reject reasons and details, and output rows for every input, ASCII or not."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from emopillars.config import RunConfig
from emopillars.stages import stage_context
from emopillars.stages.base import Parsed, Reject, Row, StageContext, normalise
from emopillars.stages.contexts import CleanContext, ContextAnswer, GenerateContext
from emopillars.stages.gates import (
    debris,
    length_ratio,
    name_in_story,
    names_only_emotion,
    shared_run,
    too_short,
    word_overlap,
)
from emopillars.stages.labels import EmotionScore, LabelsAnswer, SoftLabel
from emopillars.stages.lexicon import EmotionLexicon, word_set, word_tuple
from emopillars.stages.rewrites import RewriteAnswer, RewriteUtterance
from emopillars.stages.taxonomy import LABEL_IDS, LABELS, NEUTRAL
from emopillars.stages.utterances import GenerateUtterances, Utterance, UtterancesAnswer

# -- the plain implementations, verbatim -----------------------------------------------------

_OLD_DEBRIS = re.compile(r"\{\{|\}\}|<\||\|>|</?s>|\[/?INST\]|<<SYS>>|[\d_]{5,}|_{2,}")
_OLD_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_OLD_NOT_NAMES = frozenset({"the", "a", "an", "of", "and", "mr", "mrs", "ms", "dr"})
_OLD_PERSONAL = frozenset(
    "i i'm i've i'll i'd me my mine myself we we're our us you you're your he he's him his she "
    "she's her it it's its they they're them their this that these those there here".split()
)


def _old_normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _old_word_tuple(text: str) -> tuple[str, ...]:
    if text.isascii():
        return tuple(_OLD_WORD.findall(text.lower()))
    return tuple(word.lower().replace("’", "'") for word in _OLD_WORD.findall(text))


def _old_word_set(text: str) -> frozenset[str]:
    return frozenset(_old_word_tuple(text))


def _old_debris(text: str, max_non_letter_share: float) -> str | None:
    found = _OLD_DEBRIS.search(text)
    if found:
        return f"debris {found.group(0)!r}"
    visible = len(text) - sum(map(str.isspace, text))
    if visible:
        others = visible - sum(map(str.isalpha, text))
        if others / visible > max_non_letter_share:
            return f"{others} of {visible} characters are not letters"
    return None


def _old_too_short(text: str, minimum: int) -> str | None:
    count = len(_old_word_tuple(text))
    return f"{count} words, fewer than {minimum}" if count < minimum else None


def _old_names_only_emotion(text: str, lexicon: EmotionLexicon) -> str | None:
    said = _old_word_tuple(text)
    if not said:
        return None
    content = [word for word in said if word not in _OLD_NOT_NAMES]
    if content and all(word in lexicon.labels_of for word in content):
        return "only emotion words"
    if said[0] in lexicon.labels_of and len(said) <= 6 and not _OLD_PERSONAL & _old_word_set(text):
        return f"a phrase naming {lexicon.labels_of[said[0]]}"
    return None


def _old_runs(sequence: Sequence[str], length: int) -> set[tuple[str, ...]]:
    return {tuple(sequence[i : i + length]) for i in range(len(sequence) - length + 1)}


def _old_shared_run(text: str, source: str, length: int) -> str | None:
    if length <= 0:
        return None
    said = _old_word_tuple(text)
    if len(said) < length:
        return None
    runs = frozenset(_old_runs(_old_word_tuple(source), length))
    for start in range(len(said) - length + 1):
        run = tuple(said[start : start + length])
        if run in runs:
            return " ".join(run)
    return None


def _old_word_overlap(first: str, second: str) -> float:
    a, b = _old_word_set(first), _old_word_set(second)
    if not a or not b:
        return 1.0 if a == b else 0.0
    return len(a & b) / len(a | b)


def _old_name_in_story(name: str, story: str) -> bool:
    named = [word for word in _old_word_tuple(name) if word not in _OLD_NOT_NAMES]
    return not _old_word_set(story).isdisjoint(named)


def _old_length_ratio(rewritten: str, original: str) -> float:
    return len(_old_word_tuple(rewritten)) / max(1, len(_old_word_tuple(original)))


def _old_found(lexicon: EmotionLexicon, text: str) -> list[str]:
    return [word for word in _old_word_tuple(text) if word in lexicon.labels_of]


def _old_check_context(context: str, ctx: StageContext) -> None:
    gates = ctx.config.gates
    for reason, detail in (
        ("context_debris", _old_debris(context, gates.max_non_letter_share)),
        ("context_too_short", _old_too_short(context, gates.min_context_words)),
    ):
        if detail is not None:
            raise Reject(reason, f"{detail}: {context}")


def _old_generate_context(row: Row, answer: ContextAnswer, ctx: StageContext) -> Parsed:
    context = answer.context.strip()
    if _old_normalise(row["utterance"]) in _old_normalise(context):
        raise Reject("context_quotes_utterance", context)
    _old_check_context(context, ctx)
    return Parsed(rows=[{"context_raw": context}])


def _old_clean_context(row: Row, answer: ContextAnswer, ctx: StageContext) -> Parsed:
    context = answer.context.strip()
    _old_check_context(context, ctx)
    named = _old_found(ctx.lexicon, context)
    if named:
        raise Reject("context_names_emotion", f"{', '.join(named)}: {context}")
    return Parsed(rows=[{"context": context}])


def _old_rewrite(row: Row, answer: RewriteAnswer, ctx: StageContext) -> Parsed:
    rewritten, original = answer.utterance.strip(), row["utterance"]
    if _old_normalise(rewritten) == _old_normalise(original):
        raise Reject("unchanged", rewritten)
    gates = ctx.config.gates
    ratio = _old_length_ratio(rewritten, original)
    checks = (
        ("rewrite_debris", _old_debris(rewritten, gates.max_non_letter_share)),
        ("rewrite_too_short", _old_too_short(rewritten, gates.min_rewrite_words)),
        (
            "rewrite_length_ratio",
            None
            if gates.min_rewrite_ratio <= ratio <= gates.max_rewrite_ratio
            else f"{ratio:.2f} times the original's words",
        ),
        (
            "rewrite_adds_emotion_words",
            None
            if len(_old_found(ctx.lexicon, rewritten)) <= len(_old_found(ctx.lexicon, original))
            else ", ".join(_old_found(ctx.lexicon, rewritten)),
        ),
    )
    for reason, detail in checks:
        if detail is not None:
            raise Reject(reason, f"{detail}: {rewritten}")
    return Parsed(rows=[{"rewritten_utterance": rewritten}])


def _old_gate(text: str, row: Row, ctx: StageContext) -> tuple[str, str] | None:
    gates = ctx.config.gates
    for reason, detail in (
        ("utterance_debris", _old_debris(text, gates.max_non_letter_share)),
        ("utterance_too_short", _old_too_short(text, gates.min_utterance_words)),
        ("utterance_names_emotion", _old_names_only_emotion(text, ctx.lexicon)),
        ("utterance_copies_story", _old_shared_run(text, row["text"], gates.story_copy_words)),
    ):
        if detail is not None:
            return reason, detail
    return None


def _old_utterances(row: Row, answer: UtterancesAnswer, ctx: StageContext) -> Parsed:
    parsed = Parsed(rows=[])
    seen_texts: set[str] = set()
    seen_emotions: set[str] = set()
    kept: list[str] = []
    for item in answer.utterances:
        text = item.text.strip()
        failed = _old_gate(text, row, ctx)
        if failed is not None:
            reason, detail = failed
            parsed.item_rejects.append((reason, f"{detail}: {text}"))
            continue
        if _old_normalise(text) in seen_texts:
            parsed.item_rejects.append(("duplicate_utterance", text))
            continue
        similar = next(
            (
                other
                for other in kept
                if _old_word_overlap(text, other) >= ctx.config.gates.near_duplicate_similarity
            ),
            None,
        )
        if similar is not None:
            parsed.item_rejects.append(("near_duplicate_utterance", f"{text} ~ {similar}"))
            continue
        if item.emotion != NEUTRAL and item.emotion in seen_emotions:
            parsed.item_rejects.append(("duplicate_emotion", f"{item.emotion}: {text}"))
            continue
        seen_texts.add(_old_normalise(text))
        seen_emotions.add(item.emotion)
        kept.append(text)
        parsed.rows.append(
            {
                "utterance_id": f"{row['actor_id']}/u{len(parsed.rows):02d}",
                "intended_emotion": item.emotion,
                "utterance": text,
            }
        )
    if not parsed.rows:
        raise Reject("no_utterances")
    return parsed


def _old_mapped_scores(
    answer: LabelsAnswer, ctx: StageContext
) -> tuple[dict[str, float], list[str]]:
    scores: dict[str, float] = {}
    unmapped: list[str] = []
    for item in answer.emotions[: ctx.config.max_labels]:
        label = ctx.taxonomy.map_label(item.label)
        if label is None:
            unmapped.append(item.label.strip())
            continue
        scores[label] = max(scores.get(label, 0.0), item.intensity)
    if not scores:
        raise Reject("off_taxonomy_only", ", ".join(unmapped))
    return scores, unmapped


def _old_labels(row: Row, answer: LabelsAnswer, ctx: StageContext) -> Parsed:
    scores, unmapped = _old_mapped_scores(answer, ctx)
    kept = {label: s for label, s in scores.items() if s >= ctx.config.label_threshold}
    if not kept:
        raise Reject("below_threshold", str(scores), retryable=False)
    ordered = sorted(kept.items(), key=lambda pair: (-pair[1], LABEL_IDS[pair[0]]))
    intended_in_labels = row["intended_emotion"] in kept
    if ctx.config.gates.require_intended_emotion and not intended_in_labels:
        raise Reject("intended_not_labelled", str(scores), retryable=False)
    row_out = {
        "intended_in_labels": intended_in_labels,
        "labels": [label for label, _ in ordered],
        "scores": [score for _, score in ordered],
        "unmapped_labels": unmapped,
    }
    return Parsed(rows=[row_out], item_rejects=[("unmapped_label", u) for u in unmapped])


# -- generated inputs ------------------------------------------------------------------------

_WORDS = (
    "the a of and Mr she I I'm you we They it's don't Gwen RAFE ferry lake night boat harbour "
    "joy Love grief fear Pure surprise furious afraid happy captain wheel again never"
).split()
_PIECES = (
    # letters of other scripts, final sigma, the dotted capital I, ligatures, CJK
    "é", "Éclair", "straße", "STRASSE", "ﬁne", "ΟΔΟΣ", "Σ", "σς", "λόγος", "İstanbul", "ǅ",
    "日本語", "ㄱ", "ʰ", "々",
    # digits and numbers of other scripts, which are not letters
    "٣", "١٢٣٤٥", "½", "²", "Ⅻ", "0", "7", "42", "1234", "12345", "3.14", "٣٣_٣٣",
    # spaces and controls, ASCII and not
    " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x00",
    "\x07", "\x7f", "\x85", "\xa0", "\u2028", "\u3000", "\u200b", "\ud800",
    # apostrophes, inside words and not
    "'", "’", "''", "’’", "'tis", "dogs'", "o'clock", "a''b", "a'’b", "rock’n’roll", "'’'",
    # debris and near misses
    "{{", "}}", "{", "}", "<|", "|>", "<s>", "</s>", "<s", "</", "[INST]", "[/INST]", "[INST",
    "<<SYS>>", "<<SYS>", "<SYS>>", "lp_14329785", "__", "_", "_1_2_", "a_b", "||", "<<",
    # punctuation
    ".", ",", "!", "?", "...", "--", "—", "«", "»", "(n)", "#", "@", "*", '"',
)  # fmt: skip
_DEBRIS_CHARS = "{}<|>[]/sINSTY_0123456789٣ a\n"


def _text(rng: random.Random, pieces: int, noise: float) -> str:
    """Words, and with probability `noise` each, the pieces above, debris characters or any
    character at all."""
    parts: list[str] = []
    for _ in range(pieces):
        roll = rng.random() / noise
        if roll >= 1:
            parts.append(rng.choice(_WORDS))
        elif roll < 0.7:
            parts.append(rng.choice(_PIECES))
        elif roll < 0.9:
            parts.append("".join(rng.choices(_DEBRIS_CHARS, k=rng.randrange(1, 8))))
        else:
            parts.append(chr(rng.randrange(0x110000)))
        parts.append(rng.choice(("", " ", " ", " ", "  ", "\n", "\t", ", ")))
    return "".join(parts)


def _texts(seed: int, count: int, longest: int, noise: float = 0.5) -> list[str]:
    rng = random.Random(seed)
    return ["", " ", "\n"] + [_text(rng, rng.randrange(1, longest), noise) for _ in range(count)]


# Every ASCII character on its own and between letters and apostrophes.
_ASCII_TEXTS = [
    form.format(c=chr(code))
    for code in range(128)
    for form in ("{c}", "ab{c}cd", "{c}ab", "ab{c}", "a'{c}b", "a{c}'b", "{c}{c}{c}{c}{c}")
]


@pytest.fixture(scope="module")
def ctx() -> StageContext:
    return stage_context(RunConfig(engine="fake"))


@pytest.fixture(scope="module")
def strict() -> StageContext:
    gates = {
        "story_copy_words": 3,
        "min_utterance_words": 2,
        "min_context_words": 3,
        "min_rewrite_words": 2,
        "near_duplicate_similarity": 0.4,
        "require_intended_emotion": True,
    }
    return stage_context(RunConfig.model_validate({"engine": "fake", "gates": gates}))


Parse = Callable[[Row, Any, StageContext], Parsed]


def _outcome(parse: Parse, row: Row, answer: Any, ctx: StageContext) -> tuple[Any, ...]:
    try:
        parsed = parse(row, answer, ctx)
    except Reject as reject:
        return ("reject", reject.reason, reject.detail, reject.retryable)
    return ("parsed", parsed.rows, parsed.item_rejects)


def _assert_same(new: Parse, old: Parse, row: Row, answer: Any, ctx: StageContext) -> None:
    assert _outcome(new, row, answer, ctx) == _outcome(old, row, answer, ctx), (row, answer)


# -- the pure checks -------------------------------------------------------------------------


def test_words_are_the_same() -> None:
    for text in _ASCII_TEXTS + _texts(1, 3000, 30):
        assert word_tuple(text) == _old_word_tuple(text), repr(text)
        assert word_set(text) == _old_word_set(text), repr(text)


def test_debris_is_the_same() -> None:
    rng = random.Random(2)
    debris_only = ["".join(rng.choices(_DEBRIS_CHARS, k=rng.randrange(30))) for _ in range(3000)]
    for text in _ASCII_TEXTS + _texts(3, 3000, 30) + debris_only:
        for share in (0.0, 0.2, 0.5, 1.0):
            assert debris(text, share) == _old_debris(text, share), repr(text)


def test_word_gates_are_the_same(ctx: StageContext) -> None:
    texts = _texts(4, 1500, 14, noise=0.2)
    stories = _texts(5, 20, 120, noise=0.2)
    rng = random.Random(6)
    for text in texts:
        story = rng.choice(stories)
        other = rng.choice(texts)
        assert too_short(text, 4) == _old_too_short(text, 4)
        assert names_only_emotion(text, ctx.lexicon) == _old_names_only_emotion(text, ctx.lexicon)
        for length in (0, 1, 2, 3, 8):
            assert shared_run(text, story, length) == _old_shared_run(text, story, length)
        assert word_overlap(text, other) == _old_word_overlap(text, other)
        assert length_ratio(text, other) == _old_length_ratio(text, other)
        assert name_in_story(text, story) == _old_name_in_story(text, story)
        assert ctx.lexicon.found(text) == _old_found(ctx.lexicon, text)
        assert normalise(text) == _old_normalise(text)


# -- the stage parsers -----------------------------------------------------------------------


def _respaced(rng: random.Random, text: str) -> str:
    """The text as a model might quote it: other case, other spacing."""
    text = text.upper() if rng.random() < 0.5 else text
    return "".join(rng.choice((" ", "\n ", "\t", "\u3000")) if c == " " else c for c in text)


@pytest.mark.parametrize("strictness", ["ctx", "strict"])
def test_context_parsers_are_the_same(strictness: str, request: pytest.FixtureRequest) -> None:
    ctx: StageContext = request.getfixturevalue(strictness)
    rng = random.Random(7)
    texts = _texts(8, 600, 40, noise=0.03)
    for text in texts:
        utterance = rng.choice(texts)
        quoting = f"{rng.choice(texts)} {_respaced(rng, utterance)}{rng.choice(texts)}"
        context = quoting if rng.random() < 0.3 else text
        row = {"utterance": utterance, "context_raw": context}
        answer = ContextAnswer.model_construct(context=context)
        _assert_same(GenerateContext().parse, _old_generate_context, row, answer, ctx)
        _assert_same(CleanContext().parse, _old_clean_context, row, answer, ctx)


@pytest.mark.parametrize("strictness", ["ctx", "strict"])
def test_rewrite_parser_is_the_same(strictness: str, request: pytest.FixtureRequest) -> None:
    ctx: StageContext = request.getfixturevalue(strictness)
    rng = random.Random(9)
    texts = _texts(10, 800, 16, noise=0.05)
    for rewritten in texts:
        original = _respaced(rng, rewritten) if rng.random() < 0.1 else rng.choice(texts)
        row = {"utterance": original}
        answer = RewriteAnswer.model_construct(utterance=rewritten)
        _assert_same(RewriteUtterance().parse, _old_rewrite, row, answer, ctx)


@pytest.mark.parametrize("strictness", ["ctx", "strict"])
def test_utterance_parser_is_the_same(strictness: str, request: pytest.FixtureRequest) -> None:
    ctx: StageContext = request.getfixturevalue(strictness)
    rng = random.Random(11)
    # A small vocabulary, so that utterances copy the story and resemble each other.
    vocabulary = ["Gwen", "keeps", "the", "ferry", "running", "joy", "I", "you", "’", "{{"]
    stories = [" ".join(rng.choices(vocabulary, k=60)) for _ in range(5)]
    texts = _texts(12, 400, 14, noise=0.05) + [
        " ".join(rng.choices(vocabulary, k=9)) for _ in range(400)
    ]
    for _ in range(150):
        row = {"actor_id": "s1/a00", "text": rng.choice(stories)}
        # Built without validation: the gates, not the answer model, must catch short texts.
        items = [
            Utterance.model_construct(emotion=rng.choice(LABELS), text=rng.choice(texts))
            for _ in range(rng.randrange(1, 10))
        ]
        if rng.random() < 0.3:
            quoted = _respaced(rng, items[0].text)
            items.append(Utterance.model_construct(emotion=items[0].emotion, text=quoted))
        answer = UtterancesAnswer.model_construct(utterances=items)
        _assert_same(GenerateUtterances().parse, _old_utterances, row, answer, ctx)


@pytest.mark.parametrize("strictness", ["ctx", "strict"])
def test_label_parser_is_the_same(strictness: str, request: pytest.FixtureRequest) -> None:
    ctx: StageContext = request.getfixturevalue(strictness)
    rng = random.Random(13)
    names = [*LABELS, *ctx.taxonomy.synonyms, "Joy.", " ANGER ", "wonder", "happy", "x"]
    for _ in range(500):
        emotions = [
            EmotionScore.model_construct(label=rng.choice(names), intensity=rng.randrange(11) / 10)
            for _ in range(rng.randrange(1, 8))
        ]
        row = {"intended_emotion": rng.choice(LABELS)}
        answer = LabelsAnswer.model_construct(emotions=emotions)
        _assert_same(SoftLabel().parse, _old_labels, row, answer, ctx)
