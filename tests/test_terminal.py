"""The terminal: -o overrides, -q/-v, the end-of-run summary, heartbeat lines, the
packaged quickstart and ``simbench init``; the results schema 3 helpers (label, upgrade).
None of these tests trains a model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from simbench.cli import build_parser, main
from simbench.examples import example_names, example_text, write_example
from simbench.runner.progress import Heartbeat
from simbench.runner.results import KEY_COLUMNS, display_view, label, params_json, upgrade
from simbench.runner.summary import format_summary
from simbench.suite import SuiteError
from simbench.suite_overrides import apply_overrides, format_problems, load_with_overrides, parse

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "leaderboard" / "gm_controls_cpu"


# -- overrides ----------------------------------------------------------------------------
def test_override_values_are_yaml_and_paths_follow_keys_and_items():
    o = parse("probe.images=500")
    assert o.loc == ("probe", "images") and o.value == 500
    assert parse("models.0.seeds=[3, 4]").loc == ("models", 0, "seeds")
    assert parse("cache=null").value is None
    assert parse("metrics=[cka, {name: bures, params: {draws: 2}}]").value[1]["params"] == {
        "draws": 2
    }
    data = {"probe": {"images": 1}, "models": [{"id": "a"}]}
    apply_overrides(data, [parse("probe.images=7"), parse("models.0.seed=3"), parse("run.x=1")])
    assert data == {"probe": {"images": 7}, "models": [{"id": "a", "seed": 3}], "run": {"x": 1}}
    with pytest.raises(SuiteError, match=r"models\.5: no item 5 in a list of 1"):
        apply_overrides(data, [parse("models.5.seed=1")])
    for bad in ("probe.images", "=3", "a..b=1", "x=[1,"):
        with pytest.raises(SuiteError):
            parse(bad)


def test_an_invalid_override_is_reported_against_the_override(tmp_path):
    text = example_text("quickstart")
    with pytest.raises(SuiteError) as err:
        load_with_overrides(
            "q.yaml", ["probe.images=abc", "probe.imgs=3"], text=text, base_dir=tmp_path
        )
    msg = format_problems(err.value)
    assert "-o probe.images=abc: probe.images:" in msg
    assert "-o probe.imgs=3: probe.imgs:" in msg and "images" in msg  # did-you-mean
    suite = load_with_overrides(
        "q.yaml", ["probe.images=50", "name=qs2"], text=text, base_dir=tmp_path
    )
    assert suite.probe.images == 50 and suite.name == "qs2"
    assert Path(suite.output_dir) == tmp_path / "runs" / "quickstart"


def test_a_file_problem_keeps_its_line_when_overrides_are_given(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(example_text("quickstart").replace("images: 300", "images: -3"))
    with pytest.raises(SuiteError) as err:
        load_with_overrides(path, ["seed=1"])
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "images: -3" in t)
    assert f"{path}:{line}: probe.images:" in format_problems(err.value)


def test_run_cli_overrides_quiet_and_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--example", "quickstart", "-o", "probe.images=abc", "--dry-run"]) == 2
    assert "-o probe.images=abc: probe.images:" in capsys.readouterr().err
    assert main(["run", "--example", "nope", "--dry-run"]) == 2
    assert "available: quickstart" in capsys.readouterr().err
    assert main(["run", "--dry-run"]) == 2  # neither a file nor --example
    capsys.readouterr()
    assert main(["run", "--example", "quickstart", "-o", "probe.images=40", "--dry-run"]) == 0
    assert "quickstart" in capsys.readouterr().out
    assert main(["run", "--example", "quickstart", "--dry-run", "-q"]) == 0
    assert capsys.readouterr().out == ""


def test_every_command_has_quiet_and_verbose():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"run", "train", "compare", "report", "status", "list", "init"} <= set(sub.choices)
    for name, p in sub.choices.items():
        opts = set(p._option_string_actions)
        assert {"--quiet", "--verbose"} <= opts, name


# -- quickstart ---------------------------------------------------------------------------
def test_the_packaged_quickstart_is_the_examples_copy_and_init_writes_it(tmp_path, capsys):
    assert "quickstart" in example_names()
    text = example_text("quickstart")
    assert text == (ROOT / "examples" / "quickstart.yaml").read_text(encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 0
    assert (tmp_path / "quickstart.yaml").read_text(encoding="utf-8") == text
    assert main(["init", str(tmp_path)]) == 2  # kept unless --force
    assert "exists" in capsys.readouterr().err
    assert write_example(tmp_path, force=True) == tmp_path / "quickstart.yaml"


# -- summary and heartbeat ----------------------------------------------------------------
def test_summary_has_the_board_top_failures_and_paths():
    df = upgrade(pd.read_parquet(BOARD / "results.parquet"))
    df["error"] = None
    df.loc[df.index[:3], "error"] = "ValueError: C2 has no eigenvalue left\nTraceback..."
    df.loc[df.index[3], "error"] = "RuntimeError: boom"
    run = SimpleNamespace(
        results=df,
        paths={"parquet": BOARD / "results.parquet", "csv": BOARD / "results.csv"},
        report={"report_html": BOARD / "report.html", "leaderboard_md": BOARD / "leaderboard.md"},
    )
    text = format_summary(run, top=2)
    lines = text.splitlines()
    long = pd.read_csv(BOARD / "leaderboard.csv")
    rep = long[(long.board == "representations") & (long.test == "overall")]
    rep = rep.sort_values("score", ascending=False, kind="stable")
    assert lines[0] == f"representations board (top 2 of {len(rep)}):"
    first = rep.iloc[0]  # the leader: its overall score and its bootstrap interval
    assert lines[1].split() == [
        "1",
        first["metric"],
        "score",
        f"{first.score:.3f}",
        f"[{first.ci_low:.3f},",
        f"{first.ci_high:.3f}]",
    ]
    weights = [i for i, line in enumerate(lines) if line.startswith("weights board (top 2 of")]
    assert weights and lines[weights[0] + 1].split()[0] == "1="  # tied with the leader
    assert f"failed cells: 4 of {len(df)}; first reasons:" in lines
    assert "  3 × ValueError: C2 has no eigenvalue left (e.g. bures at conv1)" in lines
    assert any(line.startswith("  1 × RuntimeError: boom") for line in lines)
    assert f"  report       {BOARD / 'report.html'}" in lines


def test_heartbeat_lines_say_the_stage_and_its_progress():
    lines: list[str] = []
    hb = Heartbeat("score", 3, lines.append, interval_s=0.02)
    hb.update(2)
    deadline = time.monotonic() + 5
    while len(lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    hb.close()
    assert lines[0] == "score: started 3 jobs"
    assert lines[1].startswith("score: 2/3 jobs done, ")


# -- schema 3 -----------------------------------------------------------------------------
def test_label_and_params_json_round_trip():
    assert params_json({}) is None and params_json(None) is None
    assert params_json({"k": 1, "a": "x"}) == '{"a":"x","k":1}'
    assert label("bures", '{"draws":8}') == "bures(draws=8)"
    assert label("cka", None) == "cka" and label("cka", float("nan")) == "cka"
    assert label("cka", params_json({"kernel": "rbf", "debiased": True})) == (
        "cka(debiased=True, kernel=rbf)"
    )


def test_upgrade_reads_the_committed_schema_1_table_as_schema_3():
    old = pd.read_parquet(BOARD / "results.parquet")
    meta = json.loads((BOARD / "results.meta.json").read_text())
    new = upgrade(old, meta)
    assert (new.schema_version == 3).all()
    assert not new.duplicated(list(KEY_COLUMNS)).any()
    weights = new.consumes == "weights"
    assert new.features[weights].isna().all() and new.alignment[~weights].isna().all()
    assert set(new.features[~weights]) == {"positions", "pooled"}
    assert set(new.metric) == {m.split("(")[0] for m in old.metric}
    assert set(new.metric_params.dropna()) == {'{"draws":8}'}
    order = next(iter(meta["layers"].values()))
    assert (new.depth_a == new.layer_a.map(order.index)).all()
    assert new.error.notna().sum() == (old.error.fillna("") != "").sum() == 6
    assert new.error.dropna().str.contains("no eigenvalue left").all()
    # and the display labels are schema 2's again
    view = display_view(new)
    assert (view.metric == old.metric).all() and (view.alignment == old.alignment).all()
