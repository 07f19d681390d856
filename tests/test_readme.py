"""Every Python code block of README.md and of docs/*.md runs as written, in order, in one
namespace per file (as a reader pasting them into one session would); values the prose
promises are checked. Every bash block is valid shell (``bash -n``), and the docs site
builds with ``mkdocs build --strict`` where mkdocs is installed (the ``docs`` extra)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def blocks(path: Path, lang: str) -> list[str]:
    """The fenced ``lang`` code blocks of a Markdown file, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M)


BLOCKS = blocks(README, "python")


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


@pytest.fixture(scope="module")
def namespace():
    ns: dict = {"__name__": "__readme__"}
    for i, code in enumerate(BLOCKS):
        exec(compile(code, f"README.md (python block {i + 1})", "exec"), ns)
    return ns


def test_blocks_run_and_keep_their_promises(namespace):
    ns = namespace
    X, Y, cka, a = ns["X"], ns["Y"], ns["cka"], ns["a"]
    assert a.pull_back(ns["W_B"]).shape == (32, X.shape[1])
    assert cka(ns["m"]) == pytest.approx(cka(X, Y), abs=1e-12)  # "== cka(X, Y) to rounding"
    s = ns["s"]
    assert s.ci[0] <= s.value <= s.ci[1] and np.isfinite(s.z)
    streamed = cka.evaluate(ns["bm"], uncertainty={"chunk": 1000})
    direct = cka.evaluate(X, Y, uncertainty={"chunk": 1000})
    assert streamed.value == pytest.approx(direct.value, abs=1e-10)
    assert streamed.stderr == pytest.approx(direct.stderr, abs=1e-10)


@pytest.mark.parametrize("page", [p for p in DOCS if blocks(p, "python")], ids=lambda p: p.name)
def test_docs_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a block writes stays out of the repository
    ns: dict = {"__name__": f"__docs_{page.stem}__"}
    for i, code in enumerate(blocks(page, "python")):
        exec(compile(code, f"docs/{page.name} (python block {i + 1})", "exec"), ns)


def test_docs_have_python_blocks():
    pages = {p.name for p in DOCS if blocks(p, "python")}
    assert {"getting-started.md", "results.md", "plugins.md"} <= pages


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_bash_blocks_are_valid_shell(path):
    for i, code in enumerate(blocks(path, "bash")):
        out = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
        assert out.returncode == 0, f"{path.name} bash block {i + 1}: {out.stderr}"


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).with_name("mkdocs"))
    out = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    assert "runs/quickstart" in (tmp_path / "site" / "suite-format" / "index.html").read_text()


def test_many_models_block(namespace):
    many = namespace["many"]
    # 3 model pairs x 4 layer pairs x 2 metrics, equal to pair-by-pair evaluate
    assert len(many) == 24 and many.error.isna().all()
    r = many.iloc[0]
    import simbench

    ref = simbench.get_metric(r.metric)(
        namespace["reps"][r.model_a][r.layer_a], namespace["reps"][r.model_b][r.layer_b]
    )
    assert r.value == pytest.approx(ref, abs=1e-12)
