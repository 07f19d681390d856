"""The report page (issue #12): structure, figures drawn once, headless Chromium at desktop
and phone widths, and output files that honour the umask.

The page is rendered from a small real run: the tiny suite of ``tests/test_runner.py``
(VGG width 1/16, one epoch) with the weight metrics of GM Fig. 3 (``bures_cosine``,
``effective_rank``) and SRM, so the eigenvector heatmaps, their effective-rank arrows and
Lu et al.'s panels are all drawn.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from simbench.report import write_report
from simbench.report.schema import label, split_label, to_schema3
from simbench.runner.driver import run_suite
from tests.test_runner import LAYERS, TINY, shared_models, write_suite

SUITE = TINY.replace(
    "metrics: [cka, bures_cosine, procrustes_distance]",
    # shrinkage none: one-epoch models have no eigenvalue above GM's noise bulk in most layers
    "metrics: [cka, srm, {name: bures_cosine, params: {shrinkage: none}},\n"
    "          {name: effective_rank, params: {shrinkage: none}}]",
)
OUTPUTS = ("report.html", "report.md", "leaderboard.md", "leaderboard.csv")
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)


@pytest.fixture
def umask() -> Iterator[object]:
    """Set the process umask for one test (``umask(mask)``), restored afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny suite run and reported under umask 022."""
    folder = tmp_path_factory.mktemp("page")
    path = write_suite(folder, SUITE, models=shared_models(tmp_path_factory))
    old = os.umask(0o022)
    try:
        run_suite(path, echo=None)
        write_report(folder / "out")
    finally:
        os.umask(old)
    return folder / "out"


@pytest.fixture(scope="module")
def page(run_dir: Path) -> str:
    return (run_dir / "report.html").read_text()


def test_page_structure(page: str) -> None:
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # a table of contents whose every link is an anchor of the page; the leaderboard first
    links = re.findall(r'<li><a href="#([^"]+)">', page)
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    assert links[0] == "leaderboard" and set(links) <= ids
    assert {"depth-curves", "eigenvectors", "srm", "gm-filters", "about"} <= set(links)
    assert page.index('id="leaderboard"') < page.index('id="depth-curves"')
    assert page.index('id="eigenvectors"') < page.index('id="about"')
    # every table scrolls in its own box; long ones fold
    assert page.count("<table") == page.count('<div class="scroll"><table')
    from simbench.report.writer import COLLAPSE_ROWS

    folded = re.findall(r"<details><summary>Show the (\d+) rows", page)
    for body in re.findall(r"<tbody>(.*?)</tbody>", page, flags=re.S):
        rows = body.count("<tr")
        if rows > COLLAPSE_ROWS:
            assert str(rows) in folded, f"a table of {rows} rows is not folded"
    # self-contained: no scripts, no external resources
    assert "<script" not in page and not re.search(r"(?:src|href)=\"https?:", page)


def test_every_figure_drawn_once_with_alt_text(run_dir: Path, page: str) -> None:
    imgs = re.findall(r"<img ([^>]*)>", page)
    assert imgs
    for attrs in imgs:
        alt = re.search(r'alt="([^"]*)"', attrs)
        assert alt and alt.group(1).strip(), attrs[:80]
    names = re.findall(r'<figure id="([^"]+)">', page)
    assert len(names) == len(set(names)) == len(imgs)
    # GM Fig. 3: one heatmap grid per alignment (not one per weight metric), every layer
    eig = sorted(n for n in names if n.startswith("eigvec-"))
    assert eig == ["eigvec-identity", "eigvec-procrustes"]
    alts = dict(zip(names, re.findall(r'alt="([^"]*)"', page), strict=True))
    for name in eig:
        assert all(layer in alts[name] for layer in LAYERS)  # conv5 and fc included
    assert sorted(p.name for p in (run_dir / "figures").glob("eigvec-*.png")) == [
        f"{n}.png" for n in eig
    ]
    # GM's colour scale and the effective-rank arrows are promised only when drawn
    caption = page[page.index('id="eigvec-procrustes"') :].split("</figcaption>")[0]
    assert "white at the chance level 1/√d" in caption
    assert "red arrows: effective rank" in caption
    # Lu et al. Fig. 3 panels for SRM
    assert any(n.startswith("srm-srm") for n in names)
    # GM Fig. 1 for each of the 3 trained models (8 spatial convs each), GM Fig. 2 for one
    filters = [n for n in names if n.startswith("eigenfilters-")]
    assert len(filters) == 3
    assert all(all(f"conv{i}" in alts[n] for i in range(1, 9)) for n in filters)
    assert len([n for n in names if n.startswith("projection-")]) == 1


def test_gm_scale_recorded_in_results(run_dir: Path) -> None:
    """The chance level 1/√d of each eigenvector array is in the weight rows' details:
    for conv2 (input 4 channels × 3 × 3 taps, d = 36) it is 1/6."""
    df = pd.read_parquet(run_dir / "results.parquet")
    rows = df[(df["layer_a"] == "conv2") & df["metric"].str.startswith("effective_rank")]
    chances = [json.loads(d)["eigenvector_chance"] for d in rows["details"]]
    assert len(chances) == 6 and chances == pytest.approx([1 / 6] * 6, rel=1e-12)


#: injected into a copy of the page: measures it in its own viewport and hands the result
#: to the wrapper page (postMessage works between file:// frames; --dump-dom shows the top)
_PROBE = """<script>
addEventListener('load', () => {
  const root = document.documentElement;
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5
                 && !e.closest('.scroll'))
    .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id);
  const noAlt = [...document.querySelectorAll('img, svg')]
    .filter(e => !((e.getAttribute('alt') || e.getAttribute('aria-label') || '').trim()))
    .length;
  parent.postMessage(JSON.stringify({scrollWidth: root.scrollWidth, innerWidth,
    images: document.images.length, noAlt, wide}), '*');
});
</script>"""
#: the wrapper: an iframe of the tested width (a headless window is at least 500 px wide)
_WRAPPER = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="probe.html" style="width:{width}px;height:900px;border:0"></iframe>
<script>
addEventListener('message', e => {{
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = e.data;
  document.body.appendChild(out);
}});
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
@pytest.mark.parametrize("width", [1280, 390])
def test_headless_chromium_no_horizontal_overflow(
    run_dir: Path, page: str, tmp_path: Path, width: int
) -> None:
    """The page at a desktop and a phone width: nothing wider than the viewport (tables
    scroll inside their own box), every image with alt text."""
    (tmp_path / "probe.html").write_text(page.replace("</body>", _PROBE + "</body>"))
    wrapper = tmp_path / "wrapper.html"
    wrapper.write_text(_WRAPPER.format(width=width))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--window-size=1400,1000", "--virtual-time-budget=10000",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", wrapper.as_uri()]  # fmt: skip
    got = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    m = re.search(r'<pre id="probe">(.*?)</pre>', got.stdout)
    assert m, got.stderr[-2000:]
    res = json.loads(html.unescape(m.group(1)))
    assert res["innerWidth"] == width
    assert res["scrollWidth"] <= res["innerWidth"], res
    assert res["wide"] == [], res
    assert res["images"] == page.count("<img ") and res["noAlt"] == 0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_run_outputs_honour_umask_022(run_dir: Path) -> None:
    for name in (*OUTPUTS, "results.parquet", "results.csv", "results.meta.json"):
        assert _mode(run_dir / name) == 0o644, name
    for png in (run_dir / "figures").glob("*.png"):
        assert _mode(png) == 0o644, png.name
    for ckpt in (run_dir / "cache" / "models").rglob("*.safetensors"):
        assert _mode(ckpt) == 0o644, ckpt


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_report_and_checkpoint_modes_follow_umask(
    run_dir: Path, tmp_path: Path, umask, mask: int, mode: int
) -> None:
    from simbench.train.checkpoint import save_checkpoint

    out = tmp_path / "run"
    shutil.copytree(run_dir, out, ignore=shutil.ignore_patterns("cache", "report*", "leader*"))
    umask(mask)
    paths = write_report(out)
    for name in OUTPUTS:
        assert _mode(out / name) == mode, name
    assert {_mode(p) for p in paths["figures"].glob("*.png")} == {mode}
    ckpt = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(3)}, {"note": "x"})
    assert _mode(ckpt) == mode and _mode(ckpt.with_suffix(".json")) == mode


# -- schema 3 and the schema-2 adapter ------------------------------------------------------
def test_schema2_labels_split_and_features() -> None:
    assert split_label("bures(draws=8)") == ("bures", '{"draws":8}')
    assert split_label("cka(kernel=rbf, sigma=0.5)") == ("cka", '{"kernel":"rbf","sigma":0.5}')
    assert split_label("cka") == ("cka", None)
    assert label("bures", '{"draws":8}') == "bures(draws=8)" and label("cka", None) == "cka"
    old = pd.DataFrame(
        {
            "metric": ["bures(draws=8)", "cka", "cka", "svcca"],
            "alignment": ["procrustes", "none", "pooled", "flat"],
            "consumes": ["weights", "representations", "representations", "representations"],
            "layer_a": ["conv1", "conv2", "conv1", "conv2"],
            "layer_b": ["conv1", "conv2", "conv2", "conv1"],
            "error": ["", None, "ValueError: x", np.nan],
        }
    )
    new = to_schema3(old, ["conv1", "conv2"])
    assert new["metric"].tolist() == ["bures", "cka", "cka", "svcca"]
    assert new["metric_params"].tolist() == ['{"draws":8}', None, None, None]
    assert new["alignment"].tolist() == ["procrustes", None, None, None]
    assert new["features"].tolist() == [None, "positions", "pooled", "flattened"]
    assert new["error"].tolist() == [None, None, "ValueError: x", None]
    assert new["depth_a"].tolist() == [0, 1, 0, 1] and new["depth_b"].tolist() == [0, 1, 1, 0]
    assert new["method"].tolist() == ["procrustes", "[positions]", "[pooled]", "[flattened]"]
    # a schema-3 table passes through unchanged (but for the display columns)
    again = to_schema3(new.drop(columns=["label", "method"]))
    pd.testing.assert_frame_equal(again, new)
