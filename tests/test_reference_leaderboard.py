"""The committed reference run (leaderboard/reference_cpu, issue #8): the leaderboard is
what the current code computes from the committed results and per-model data, and the
run meets the issue's bars (Kornblith 2019 Table 2 direction, ≥ 75 % Tiny-10 accuracy,
boards that tell metrics apart)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from simbench.report import load_results
from simbench.report.leaderboard import build_leaderboard
from simbench.report.writer import CHECKS_FILE
from simbench.runner.model_data import ModelData

RUN = Path(__file__).resolve().parents[1] / "leaderboard" / "reference_cpu"
pytestmark = pytest.mark.skipif(not RUN.is_dir(), reason="no committed reference run")


@pytest.fixture(scope="module")
def long() -> pd.DataFrame:
    return pd.read_csv(RUN / "leaderboard.csv")


def test_committed_leaderboard_is_what_the_code_computes(long) -> None:
    df, meta = load_results(RUN)
    boards = build_leaderboard(df, meta, pd.read_csv(RUN / CHECKS_FILE), data=ModelData.open(RUN))
    fresh = pd.read_csv(io.StringIO(boards.long.to_csv(index=False)))
    # 2e-3, not 1e-12: pc_deletion scores CCA-type metrics on representations with
    # principal components removed, ill-conditioned enough that the BLAS thread count of
    # the run (2 workers) and of this test (1 thread) reorders near-tied dissimilarities
    # (measured: cca 0.89673 vs 0.89656, and the CCA rows' overall by 2e-5); every other
    # score agrees to 1e-12
    pd.testing.assert_frame_equal(fresh, long, check_exact=False, rtol=0, atol=2e-3)
    cca_family = long.metric.isin(["cca", "svcca", "pwcca"])
    exact = ~((long.test == "pc_deletion") | ((long.test == "overall") & cca_family))
    pd.testing.assert_series_equal(fresh.score[exact], long.score[exact], rtol=1e-12)


def score(long: pd.DataFrame, metric: str, test: str, alignment: str | None = None) -> pd.Series:
    rows = long[(long.metric == metric) & (long.test == test)]
    if alignment is not None:
        rows = rows[rows.alignment == alignment]
    assert len(rows) == 1, (metric, test, alignment)
    return rows.iloc[0]


def test_layer_identification_bars(long) -> None:
    """Kornblith 2019 Table 2: linear CKA identifies layers (99.3 %), mean CCA does not
    (1.4 %); bars ≥ 0.90 and ≤ 0.30, over the 10 seed pairs of five Tiny-10s."""
    cka, cca = score(long, "cka", "layer_id"), score(long, "cca", "layer_id")
    assert cka.score >= 0.90 and cka.n_units == 10 and cka.ci_low <= cka.score <= cka.ci_high
    assert cca.score <= 0.30 and cca.ci_high <= 0.30


def test_tiny10_models_reach_75_percent() -> None:
    info = json.loads((RUN / "model_data" / "models.json").read_text())
    t10 = {m: v["test_acc"] for m, v in info.items() if m.startswith("t10@")}
    assert len(t10) == 5 and min(t10.values()) >= 0.75


def test_boards_tell_metrics_apart(long) -> None:
    overall = long[long.test == "overall"]
    for board in ("representations", "weights"):
        ranked = overall[(overall.board == board) & (overall.status == "ok")]
        assert ranked.score.round(12).nunique() >= 3, board
        top = ranked[ranked.score == ranked.score.max()]
        lead = top.iloc[0]
        # a shared top score only between rows whose intervals overlap
        assert ((top.ci_low <= lead.ci_high) & (top.ci_high >= lead.ci_low)).all()
    # every row of a board is scored on the board's tests; an unscorable one is incomplete
    inc = overall[overall.status != "ok"]
    assert set(inc.status) <= {"incomplete"} and set(inc.metric) == {"effective_rank"}
