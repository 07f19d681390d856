"""Property: any mutant of the quickstart suite either validates or raises the suite's
``SuiteError`` with ``FILE:LINE`` on every line — never another exception or a hang
(issue 13). Validation only, nothing computed; the mutations are those of
``scripts/suite_mutants.py`` (which counts the outcomes over a large fixed set), here
chosen by hypothesis."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "suite_mutants.py"
_spec = importlib.util.spec_from_file_location("suite_mutants", SCRIPT)
assert _spec is not None and _spec.loader is not None
suite_mutants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite_mutants)

BASE = yaml.safe_load(suite_mutants.QUICKSTART.read_text(encoding="utf-8"))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_mutant_validates_or_fails_with_file_line(tmp_path_factory, data) -> None:
    def pick(options):
        return data.draw(st.sampled_from(options))

    suite = BASE
    for _ in range(data.draw(st.integers(1, 3))):
        suite = suite_mutants.mutate(suite, pick)
    folder = tmp_path_factory.mktemp("mutant")
    outcome = suite_mutants.classify(suite, folder, timeout=60.0)
    assert outcome in ("valid", "error"), outcome


def test_fixed_mutants_and_their_dry_run_plans(tmp_path: Path) -> None:
    """The script's first 25 mutants (seed 0): valid ones also plan (``--dry-run``)."""
    outcomes = []
    for i, suite in enumerate(suite_mutants.mutants(25, seed=0)):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        outcomes.append(suite_mutants.classify(suite, folder, timeout=60.0, dry_run=True))
    assert set(outcomes) <= {"valid", "error"}, outcomes
    assert "error" in outcomes and "valid" in outcomes  # the mutations do both
