"""`emopillars judge-teacher`: the teacher's labels scored against gold labels per threshold.

Exact figures come from a scripted engine whose answers (and so the expected macro-F1s) are
written out by hand below, and from the fake engine, whose kept answers the test scores
itself. Resume is checked the way a run's is: a second invocation asks the engine nothing, and
a judge killed mid-shard resumes to the same figures without paying for any answer twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from emopillars.classify.gold import read_target
from emopillars.classify.judge import default_judge_dir, judge_teacher
from emopillars.cli.main import main
from emopillars.config import RunConfig
from emopillars.engines import EngineInfo, EngineSpec, Request, Result
from emopillars.run import lock as run_lock
from emopillars.run.lock import RunFolderBusy
from emopillars.stages.taxonomy import LABELS
from helpers import Interrupted, Recorder, recording_spec

TESTS = Path(__file__).parent

# text -> (gold GoEmotions label ids, the scripted teacher's answer)
SCRIPT: dict[str, tuple[str, str]] = {
    "I love this so much": ("18", '{"emotions": [{"label": "love", "intensity": 0.8}, '
                                  '{"label": "joy", "intensity": 0.4}]}'),
    "This is so annoying": ("3", '{"emotions": [{"label": "anger", "intensity": 0.6}, '
                                 '{"label": "annoyance", "intensity": 0.2}]}'),
    "What a day that was": ("17", '{"emotions": [{"label": "Happy", "intensity": 0.2}]}'),
    "The bus leaves at noon": ("27", '{"emotions": [{"label": "neutral", "intensity": 0.9}]}'),
    "You broke my bike again": ("2", "not JSON at all"),
    "She got the job, ha": ("18", '{"emotions": [{"label": "schadenfreude", "intensity": 0.7}, '
                                  '{"label": "love", "intensity": 0.3}]}'),
}  # fmt: skip

# Worked out by hand. Gold: love {1, 6}, annoyance {2}, joy {3}, neutral {4}, anger {5}.
# The teacher (sentence 5 rejected, so it predicts nothing): 1 love .8 joy .4; 2 anger .6
# annoyance .2; 3 joy .2 ("Happy" is a synonym); 4 neutral .9; 6 love .3 (+ one unmapped).
# At 0.1 and 0.2: love 1, joy 2/3 (s1 wrong), annoyance 1, anger 0, neutral 1 -> 11/15.
# At 0.3: love 1, the rest 0 but neutral 1 -> 2/5. From 0.4 to 0.8: love 2/3 and neutral 1
# -> 1/3. At 0.9: neutral alone -> 1/5. A tie goes to the lower threshold: 0.1.
EXPECTED = {"0.1": 11 / 15, "0.2": 11 / 15, "0.3": 2 / 5, "0.4": 1 / 3, "0.5": 1 / 3,
            "0.6": 1 / 3, "0.7": 1 / 3, "0.8": 1 / 3, "0.9": 1 / 5}  # fmt: skip
# In Ekman-like groups (anger: anger, annoyance; joy: joy, love; neutral added): gold anger
# {2, 5}, joy {1, 3, 6}, neutral {4}; teacher joy 1 .8, 3 .2, 6 .3; anger 2 .6; neutral 4 .9.
# 0.1-0.2: joy 1, anger 2/3, neutral 1 -> 8/9. 0.3: joy 4/5 -> 37/45. 0.4-0.6: joy 1/2
# -> 13/18. 0.7-0.8: anger 0 -> 1/2. 0.9: neutral alone -> 1/3.
GROUPS = {"anger": ["anger", "annoyance"], "joy": ["joy", "love"]}
EXPECTED_GROUPED = {"0.1": 8 / 9, "0.2": 8 / 9, "0.3": 37 / 45, "0.4": 13 / 18,
                    "0.5": 13 / 18, "0.6": 13 / 18, "0.7": 1 / 2, "0.8": 1 / 2,
                    "0.9": 1 / 3}  # fmt: skip


@dataclass
class ScriptedEngine:
    """Answers each judge request with the script's answer for its sentence."""

    sent: list[Request] = field(default_factory=list)

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        self.sent.extend(requests)
        results = []
        for request in requests:
            found = re.search(r'Text: "(.*)"', request.messages[-1].content)
            assert found, request.messages[-1].content
            results.append(Result(SCRIPT[found.group(1)][1], "stop", 10, 10))
        return results

    def close(self) -> None:
        pass


def scripted_spec(engine: ScriptedEngine) -> EngineSpec:
    info = EngineInfo(name="scripted", model="script", options={})
    return EngineSpec(info=info, repetition_penalty=1.0, batch_size=2, load=lambda: engine)


def write_gold(path: Path, rows: dict[str, tuple[str, str]] | None = None) -> Path:
    rows = SCRIPT if rows is None else rows
    lines = [f"{text}\t{labels}\tid{n}" for n, (text, (labels, _)) in enumerate(rows.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rounded(figures: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 4) for key, value in figures.items()}


def test_scripted_teacher_scores_exactly_as_worked_out_by_hand(tmp_path: Path) -> None:
    gold = read_target(str(write_gold(tmp_path / "gold.tsv")))
    engine = ScriptedEngine()
    config = RunConfig(engine="fake", output=tmp_path / "judge")
    result = judge_teacher(config, gold, scripted_spec(engine), shard_size=4)

    figures = result.figures
    assert figures["thresholds"] == rounded(EXPECTED)
    assert figures["recommended_threshold"] == 0.1
    assert figures["macro_f1"] == round(11 / 15, 4)
    # Micro at 0.1: 5 true positives, 7 predicted, 6 gold.
    assert figures["micro_f1"]["0.1"] == round(10 / 13, 4)
    assert figures["sentences"] == 6 and figures["labels_scored"] == 5
    assert figures["rejected"] == 1 and figures["reject_reasons"] == {"invalid_json": 1}
    assert figures["unmapped_labels"] == 1
    assert figures["per_label"]["joy"] == {
        "precision": 0.5, "recall": 1.0, "f1": round(2 / 3, 4), "support": 1
    }  # fmt: skip
    assert figures["engine"] == "scripted" and figures["labels"] == list(LABELS)
    # Six first requests and two retries of the unparsable answer (max_attempts 3), in two
    # shards; judge.json holds what was returned.
    assert result.requests_sent == len(engine.sent) == 8
    assert result.shards_computed == 2
    assert json.loads((tmp_path / "judge" / "judge.json").read_text()) == figures

    # Every mapped label is kept with its intensity, none thresholded away.
    rows = pq.read_table(tmp_path / "judge" / "judge" / "shard-00000.parquet").to_pylist()
    assert rows[1]["labels"] == ["anger", "annoyance"] and rows[1]["scores"] == [0.6, 0.2]
    # The prompt names no intended emotion: the teacher judges the sentence alone.
    prompt = engine.sent[0].messages[-1].content
    assert "Intended emotion" not in prompt and 'Text: "I love this so much"' in prompt


def test_a_label_map_scores_in_its_groups_from_the_same_answers(tmp_path: Path) -> None:
    gold_path = write_gold(tmp_path / "gold.tsv")
    mapping = tmp_path / "groups.json"
    mapping.write_text(json.dumps(GROUPS), encoding="utf-8")
    config = RunConfig(engine="fake", output=tmp_path / "judge")
    judge_teacher(config, read_target(str(gold_path)), scripted_spec(ScriptedEngine()))

    engine = ScriptedEngine()
    grouped = read_target(str(gold_path), mapping)
    result = judge_teacher(config, grouped, scripted_spec(engine), label_map=mapping)
    assert engine.sent == [] and result.requests_sent == 0  # regrouping asks nothing
    assert result.figures["thresholds"] == rounded(EXPECTED_GROUPED)
    assert result.figures["labels"] == ["anger", "joy", "neutral"]
    assert result.figures["recommended_threshold"] == 0.1
    assert result.figures["label_map"] == str(mapping)


def fake_answers(judge_dir: Path) -> dict[str, dict[str, float]]:
    """Sentence id -> the fake teacher's labels, read from the kept answers independently of
    the judge's parser: the first max_labels (5) emotions, each label's highest intensity."""
    answers = {}
    for path in sorted((judge_dir / "judge").glob("answers-*.parquet")):
        answers.update({r["key"]: r["text"] for r in pq.read_table(path).to_pylist()})
    labelled: dict[str, dict[str, float]] = {}
    for path in sorted((judge_dir / "judge").glob("shard-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            scores: dict[str, float] = {}
            for item in json.loads(answers[row["judge_request"]])["emotions"][:5]:
                scores[item["label"]] = max(scores.get(item["label"], 0.0), item["intensity"])
            labelled[row["sentence_id"]] = scores
    return labelled


def macro_f1(gold: list[set[str]], predicted: list[set[str]]) -> float:
    f1s = []
    for label in sorted(set().union(*gold)):
        tp = sum(1 for g, p in zip(gold, predicted, strict=True) if label in g and label in p)
        n_pred = sum(1 for p in predicted if label in p)
        n_gold = sum(1 for g in gold if label in g)
        f1s.append(2 * tp / (n_pred + n_gold))
    return sum(f1s) / len(f1s)


DEV = [("I'm so happy for you!", "17"), ("That's terrible news.", "25,9"),
       ("Why would anyone do that?", "7"), ("Thanks a lot, really.", "15"),
       ("I can't believe it worked", "26"), ("Ugh, not again.", "3"),
       ("It is what it is.", "27"), ("That scared me half to death", "14"),
       ("Well done, you earned it", "0,15"), ("I miss him every day", "25"),
       ("Sure, whatever you say", "27,3"), ("Oh wow, look at that", "26,0")]  # fmt: skip


def write_dev(path: Path) -> Path:
    lines = [f"{text}\t{labels}\tx{n}" for n, (text, labels) in enumerate(DEV)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_fake_teacher_figures_match_its_answers_scored_independently(tmp_path: Path) -> None:
    gold = read_target(str(write_dev(tmp_path / "dev.tsv")))
    config = RunConfig(engine="fake", output=tmp_path / "judge")
    result = judge_teacher(config, gold, shard_size=5)
    teacher = fake_answers(tmp_path / "judge")
    assert len(teacher) == len(DEV)  # the fake engine always answers in the schema
    gold_sets = [{LABELS[int(i)] for i in labels.split(",")} for _, labels in DEV]
    for key, value in result.figures["thresholds"].items():
        t = float(key)
        predicted = [
            {label for label, s in teacher[f"{n:06d}"].items() if s >= t} for n in range(len(DEV))
        ]
        assert value == round(macro_f1(gold_sets, predicted), 4), key
    best = max(result.figures["thresholds"].items(), key=lambda kv: (kv[1], -float(kv[0])))
    assert result.figures["recommended_threshold"] == float(best[0])
    assert result.figures["rejected"] == 0 and result.shards_computed == 3


def test_a_second_invocation_sends_nothing_and_loads_no_model(tmp_path: Path) -> None:
    gold = read_target(str(write_dev(tmp_path / "dev.tsv")))
    config = RunConfig(engine="fake", output=tmp_path / "judge")
    first = judge_teacher(config, gold, shard_size=5)
    markers = {p: p.read_text() for p in (tmp_path / "judge" / "manifest").rglob("*.json")}
    recorder = Recorder()
    second = judge_teacher(config, gold, recording_spec(config, recorder), shard_size=5)
    assert recorder.loads == 0 and recorder.sent == [] and second.requests_sent == 0
    assert second.shards_skipped == 3 and second.shards_computed == 0
    assert second.figures == first.figures
    assert {p: p.read_text() for p in markers} == markers  # finished shards untouched


def test_limit_judges_the_first_sentences_only(tmp_path: Path) -> None:
    gold = read_target(str(write_dev(tmp_path / "dev.tsv")))
    config = RunConfig(engine="fake", output=tmp_path / "judge")
    recorder = Recorder()
    result = judge_teacher(config, gold.head(4), recording_spec(config, recorder))
    assert result.figures["sentences"] == 4 and len(recorder.sent) == 4
    shard = tmp_path / "judge" / "sentences" / "shard-00000.parquet"
    assert [row["text"] for row in pq.read_table(shard).to_pylist()] == [t for t, _ in DEV[:4]]
    # Then all of them: the four answers are kept, so only the other eight are asked.
    recorder = Recorder()
    judge_teacher(config, gold, recording_spec(config, recorder))
    assert len(recorder.sent) == len(DEV) - 4


# The victim: a judge with a sequential engine (batches of 2, each journaled) that kills its
# own process before the first batch that finds one judge shard done and answers of the next
# journaled: the kill lands inside a shard. Deterministic: the fake engine and one thread.
VICTIM = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from helpers import Recorder, recording_spec
from emopillars.classify.gold import read_target
from emopillars.classify.judge import judge_teacher
from emopillars.config import RunConfig
judge_dir = Path({output!r})

def kill_mid_shard():
    done = list((judge_dir / "manifest" / "judge").glob("shard-*.json"))
    journals = [p for p in (judge_dir / "journal").glob("*/*.jsonl") if p.stat().st_size]
    if done and journals:
        os.kill(os.getpid(), signal.SIGKILL)

config = RunConfig(engine="fake", output=judge_dir)
spec = recording_spec(config, Recorder(before_batch=kill_mid_shard), batch_size=2)
judge_teacher(config, read_target({gold!r}), spec, shard_size=5)
"""


def test_a_killed_judge_resumes_to_the_same_figures(tmp_path: Path) -> None:
    gold_path = write_dev(tmp_path / "dev.tsv")
    judge_dir = tmp_path / "killed"
    code = VICTIM.format(tests=str(TESTS), output=str(judge_dir), gold=str(gold_path))
    victim = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    before = Interrupted.read(judge_dir)
    assert len(before.markers) == 1 and before.journaled
    assert not (judge_dir / "judge.json").exists()

    config = RunConfig(engine="fake", output=judge_dir)
    recorder = Recorder()
    resumed = judge_teacher(
        config, read_target(str(gold_path)), recording_spec(config, recorder, 2), shard_size=5
    )
    assert recorder.sent  # the rest was asked for...
    assert not recorder.keys & before.done_keys  # ...but nothing finished or journaled
    assert not recorder.keys & before.journaled
    assert before.untouched()
    assert not list((judge_dir / "journal").glob("*/*.jsonl"))

    reference = RunConfig(engine="fake", output=tmp_path / "reference")
    uninterrupted = judge_teacher(reference, read_target(str(gold_path)), shard_size=5)
    assert resumed.figures == uninterrupted.figures


def test_a_judge_folder_has_one_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold_path = write_dev(tmp_path / "dev.tsv")
    judge_dir = tmp_path / "judge"
    config = RunConfig(engine="fake", output=judge_dir)
    recorder = Recorder()
    # Another process's lock, as the kernel sees it: flock locks belong to an open file.
    with run_lock.exclusive(judge_dir, "emopillars judge-teacher", create=True):
        holder = f"emopillars judge-teacher (pid {os.getpid()} on host {socket.gethostname()}"
        with pytest.raises(RunFolderBusy, match=re.escape(holder)):
            judge_teacher(config, read_target(str(gold_path)), recording_spec(config, recorder))
        flags = ["--gold", str(gold_path), "--engine", "fake", "--output", str(judge_dir)]
        assert main(["judge-teacher", *flags]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"emopillars: {judge_dir} is in use by {holder}")
    assert recorder.loads == 0 and recorder.sent == []
    assert sorted(p.name for p in judge_dir.iterdir()) == [".lock", "locks"]  # locks alone
    # Once the folder is free, the same judge runs; its lock goes with it.
    result = judge_teacher(config, read_target(str(gold_path)), recording_spec(config, recorder))
    assert result.figures["sentences"] == len(DEV) and len(recorder.sent) == len(DEV)
    assert not (judge_dir / ".lock.json").exists()


# -- the command -----------------------------------------------------------------------------
def test_the_command_prints_the_json_object_and_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = write_dev(tmp_path / "dev.tsv")
    flags = ["--gold", str(gold), "--engine", "fake", "--output", str(tmp_path / "j")]
    assert main(["judge-teacher", *flags, "--json", "--limit", "5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed["thresholds"]) == [f"0.{n}" for n in range(1, 10)]
    assert all(0.0 <= value <= 1.0 for value in printed["thresholds"].values())
    assert printed["recommended_threshold"] in [n / 10 for n in range(1, 10)]
    assert printed["sentences"] == 5 and printed["engine"] == "fake"
    assert printed == json.loads((tmp_path / "j" / "judge.json").read_text())

    assert main(["judge-teacher", *flags, "--limit", "5"]) == 0
    table = capsys.readouterr().out
    assert "threshold  macro-F1  micro-F1" in table and "<- recommended" in table
    assert "0 requests sent" in table and "recommended label_threshold: " in table


def test_the_command_takes_engine_flags_and_a_label_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = write_gold(tmp_path / "gold.tsv")
    mapping = tmp_path / "groups.json"
    mapping.write_text(json.dumps(GROUPS), encoding="utf-8")
    flags = ["--gold", str(gold), "--engine", "fake", "--output", str(tmp_path / "j")]
    extra = ["--max-labels", "3", "--max-tokens", "judge=64", "--temperature", "0.2"]
    assert main(["judge-teacher", *flags, *extra, "--label-map", str(mapping), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["labels"] == ["anger", "joy", "neutral"]
    assert printed["gold_labels_not_scored"] == {} and printed["texts_without_gold_labels"] == 0
    assert not list((tmp_path / "j" / "journal").glob("*/*.jsonl"))  # finished: none left
    answers = pq.read_table(next((tmp_path / "j" / "judge").glob("answers-*"))).to_pylist()
    assert all(len(json.loads(a["text"])["emotions"]) <= 3 for a in answers)


def test_the_table_says_which_gold_labels_a_label_map_leaves_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = write_gold(tmp_path / "gold.tsv")
    mapping = tmp_path / "joy.json"
    mapping.write_text(json.dumps({"joy": ["joy", "love"]}), encoding="utf-8")
    flags = ["--gold", str(gold), "--engine", "fake", "--output", str(tmp_path / "j")]
    assert main(["judge-teacher", *flags, "--label-map", str(mapping)]) == 0
    table = capsys.readouterr().out.splitlines()
    # Gold: annoyance (3) and anger (2) belong to no group; their sentences have no gold label.
    assert (
        "not scored (outside the label mapping): 2 gold labels (anger 1, annoyance 1); "
        "2 texts are left with no gold label"
    ) in table
    figures = json.loads((tmp_path / "j" / "judge.json").read_text())
    assert figures["gold_labels_not_scored"] == {"anger": 1, "annoyance": 1}
    assert figures["texts_without_gold_labels"] == 2


def test_attach_keeps_the_headline_figures_with_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emopillars.dataset.measured import read_attached

    gold = write_dev(tmp_path / "dev.tsv")
    flags = ["--gold", str(gold), "--engine", "fake", "--output", str(tmp_path / "j")]
    not_a_run = tmp_path / "nothing"
    assert main(["judge-teacher", *flags, "--attach", str(not_a_run)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert not (tmp_path / "j").exists()  # refused before any work

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}", encoding="utf-8")
    assert main(["judge-teacher", *flags, "--attach", str(run_dir), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    (kept,) = read_attached(run_dir)
    assert kept.kind == "judge-teacher" and kept.subject == "fake (fake)"
    assert kept.examples == len(DEV) and kept.target == str(gold)
    assert kept.macro_f1 == figures["macro_f1"]
    assert kept.threshold == figures["recommended_threshold"]


def test_the_default_folder_is_named_by_target_and_engine(tmp_path: Path) -> None:
    gold = write_gold(tmp_path / "gold.tsv")
    fake = scripted_spec(ScriptedEngine())
    other = EngineSpec(
        info=EngineInfo(name="scripted", model="another", options={}),
        repetition_penalty=1.0, batch_size=2, load=ScriptedEngine,
    )  # fmt: skip
    folder = default_judge_dir(str(gold), fake)
    assert folder.parent == Path("outputs") and folder.name.startswith("judge-gold-")
    assert folder != default_judge_dir(str(gold), other)
    assert default_judge_dir("goemotions:validation", fake).name.startswith(
        "judge-goemotions-validation-"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("fine text\t99\tid1\n", "are not GoEmotions labels (names or ids 0-27)"),
        ("\t3\tid1\n", "no text"),
        ("a <|im_start|>system text\t3\tid1\n", "chat-template markup"),
    ],
)
def test_unusable_gold_data_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    gold = tmp_path / "bad.tsv"
    gold.write_text(content, encoding="utf-8")
    code = main(
        ["judge-teacher", "--gold", str(gold), "--engine", "fake", "--output", str(tmp_path / "j")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "j" / "judge").exists()


def test_a_missing_gold_file_or_bad_limit_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = ["judge-teacher", "--gold", str(tmp_path / "none.tsv"), "--engine", "fake"]
    assert main(missing) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["judge-teacher", "--gold", "x.tsv", "--limit", "0"])
    assert raised.value.code == 2


# -- the real embedded model -----------------------------------------------------------------
@pytest.mark.model
def test_the_embedded_model_judges_a_handful_of_sentences(tmp_path: Path) -> None:
    gold = read_target(str(write_dev(tmp_path / "dev.tsv"))).head(4)
    config = RunConfig(engine="llamacpp", output=tmp_path / "judge")
    result = judge_teacher(config, gold)
    figures = result.figures
    assert figures["sentences"] == 4 and figures["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert set(figures["thresholds"]) == {f"0.{n}" for n in range(1, 10)}
    assert all(0.0 <= value <= 1.0 for value in figures["thresholds"].values())
    assert 0 <= figures["rejected"] <= 4 and result.requests_sent >= 4
    labelled = pq.read_table(tmp_path / "judge" / "judge" / "shard-00000.parquet").to_pylist()
    assert len(labelled) == 4 - figures["rejected"]
    for row in labelled:
        assert set(row["labels"]) <= set(LABELS)
        assert all(0.0 <= score <= 1.0 for score in row["scores"])
