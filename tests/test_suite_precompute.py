"""Everything a run needs is validated before any compute (issue 13): numbers, devices,
output and cache folders, dataset files, layer names; each problem is a
``FILE:LINE: key: message`` line, and ``simbench run --dry-run`` reports the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simbench.suite import SuiteError, load_suite

REPO = Path(__file__).resolve().parents[1]

BASE = """\
name: pre
training: {epochs: 1}
models:
  - id: a
    architecture: {name: vgg, params: {depth: 11, width: 0.25}}
    dataset: embedded
    seeds: [0, 1]
metrics: [cka]
"""


def problems_of(tmp_path: Path, text: str) -> list[tuple[int, str, str]]:
    path = tmp_path / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SuiteError) as exc:
        load_suite(path)
    for line in str(exc.value).splitlines():
        assert line.startswith(f"{path}:"), line
    return [(p.line, p.path, p.message) for p in exc.value.problems]


def test_base_suite_is_valid(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(BASE + "layers: [conv1, 'conv[23]']\n")
    assert load_suite(tmp_path / "suite.yaml").layer_patterns() == ["conv1", "conv[23]"]


@pytest.mark.parametrize(
    ("edit", "line", "key", "words"),
    [
        ("training: {epochs: 1, lr: .inf}", 2, "training.lr", "finite number"),
        ("training: {epochs: 1, momentum: .nan}", 2, "training.momentum", "finite number"),
        ("training: {epochs: -1}", 2, "training.epochs", "greater than 0"),
        ("training: {epochs: 1, device: tpu}", 2, "training.device", "unknown device 'tpu'"),
        ("    seeds: [0, 9223372036854775808]", 7, "models.0.seeds.1", "[-2^63, 2^63 - 1]"),
        ("    seeds: [0, -1]", 7, "models.0.seeds.1", "greater than or equal to 0"),
    ],
)
def test_numbers_and_devices(tmp_path: Path, edit: str, line: int, key: str, words: str) -> None:
    first = edit.split(":")[0]
    text = "\n".join(edit if ln.startswith(first + ":") else ln for ln in BASE.splitlines())
    got = problems_of(tmp_path, text + "\n")
    assert any(ln == line and k == key and words in m for ln, k, m in got), got


def test_cuda_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    text = BASE.replace("{epochs: 1}", "{epochs: 1, device: cuda}")
    got = problems_of(tmp_path, text)
    assert got == [(2, "training.device", got[0][2])] and "no CUDA GPU is visible" in got[0][2]
    # jobs that run elsewhere (a cluster's GPU nodes) may ask for cuda from a CPU login node
    ok = text + "executor: {name: slurm, params: {partition: gpu}}\n"
    (tmp_path / "ok.yaml").write_text(ok)
    try:
        load_suite(tmp_path / "ok.yaml")
    except SuiteError as exc:  # only the executor itself may be unavailable here
        assert all(p.path.startswith("executor") for p in exc.problems), exc


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ("/proc/simbench-run", "cannot create files in '/proc'"),
        ("/etc/hostname/sub", "exists and is not a folder"),
        ("runs/" + "n" * 300, "bytes, over the limit of"),
        ("''", "an empty path"),
    ],
)
def test_unwritable_output(tmp_path: Path, output: str, words: str) -> None:
    if output.startswith("/etc/hostname") and not Path("/etc/hostname").is_file():
        pytest.skip("no /etc/hostname file here")
    got = problems_of(tmp_path, BASE + f"output: {output}\n")
    assert [(ln, k) for ln, k, _ in got] == [(9, "output")] and words in got[0][2], got


def test_existing_file_as_cache_folder(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    got = problems_of(tmp_path, BASE + "cache: afile/cache\n")
    assert got[0][:2] == (9, "cache") and "exists and is not a folder" in got[0][2]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        got = problems_of(tmp_path, BASE + "output: ro/run\n")
    finally:
        ro.chmod(0o755)
    assert got[0][:2] == (9, "output") and "not a writable folder" in got[0][2]


@pytest.mark.parametrize(
    ("dataset", "key", "words"),
    [
        ("{name: npz, params: {path: /no/such.npz}}", "models.0.dataset.params.path", "no file"),
        (
            "{name: imagefolder, params: {root: /no/such/tree}}",
            "models.0.dataset.params.root",
            "is not a directory",
        ),
        ("{name: cifar10, params: {root: /no/such}}", "models.0.dataset.params.root", "no CIFAR10"),
        (
            "{name: class_subset, params: {base: {name: npz, params: {path: /no.npz}}, first: 2}}",
            "models.0.dataset.params.base.params.path",
            "no file",
        ),
    ],
)
def test_nonexistent_dataset_files(tmp_path: Path, dataset: str, key: str, words: str) -> None:
    got = problems_of(tmp_path, BASE.replace("dataset: embedded", f"dataset: {dataset}"))
    assert [(ln, k) for ln, k, _ in got] == [(6, key)] and words in got[0][2], got


def test_probe_dataset_file_is_checked(tmp_path: Path) -> None:
    got = problems_of(tmp_path, BASE + "probe: {dataset: {name: npz, params: {path: /no.npz}}}\n")
    assert got[0][:2] == (9, "probe.dataset.params.path")


@pytest.mark.parametrize(
    ("layers", "line", "key", "words"),
    [
        ("[conv1, conv99]", 9, "layers.1", "'conv99' matches no layer"),
        ("conv99*", 9, "layers", "'conv99*' matches no layer"),
        ("[Conv1]", 9, "layers.0", "conv1, conv2"),
    ],
)
def test_unknown_layers_are_load_errors(
    tmp_path: Path, layers: str, line: int, key: str, words: str
) -> None:
    got = problems_of(tmp_path, BASE + f"layers: {layers}\n")
    assert any(ln == line and k == key and words in m for ln, k, m in got), got


def test_a_model_left_without_layers(tmp_path: Path) -> None:
    """A pattern matching only another architecture's layers leaves a model with none."""
    text = BASE.replace("    seeds: [0, 1]\n", "") + (
        "  - {id: b, architecture: {name: vgg, params: {depth: 13, width: 0.25}}, "
        "dataset: embedded}\n"
    )
    text = text.replace("metrics: [cka]\n", "") + "metrics: [cka]\nlayers: [conv10]\n"
    got = problems_of(tmp_path, text)
    assert any(k == "layers" and "selects no layer of model 'a@0'" in m for _, k, m in got), got


def test_dry_run_reports_the_same_problems(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(
        BASE.replace("{epochs: 1}", "{epochs: 1, lr: .inf, device: tpu}")
        + "output: /proc/x\nlayers: [conv1, conv99]\n"
    )
    with pytest.raises(SuiteError) as exc:
        load_suite(path)
    proc = subprocess.run(
        [sys.executable, "-m", "simbench.cli", "run", str(path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == str(exc.value)
    assert f"{path}:2: training.lr:" in proc.stderr and f"{path}:9: output:" in proc.stderr


def test_last_draw_seed_fits_64_bits(tmp_path: Path) -> None:
    got = problems_of(tmp_path, BASE + f"seed: {2**63 - 1}\ndraws: 2\n")
    assert got == [(9, "seed", "seed + draws - 1 (the last draw's seed) must be below 2^63")]


def test_a_model_too_wide_to_build_is_refused(tmp_path: Path) -> None:
    """Found by scripts/suite_mutants.py: width 250000 passed validation and exhausted the
    memory while the dry run built the model to list its layers."""
    got = problems_of(tmp_path, BASE.replace("width: 0.25", "width: 250000"))
    assert got[0][:2] == (5, "models.0.architecture.params") and "at most 8" in got[0][2]
