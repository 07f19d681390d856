"""The example plugin package (plugins/simbench-example-metric) works as documented.

Without installing anything: its module, registered like an entry point would register
it, shows up in ``simbench list`` attributed to its package and computes the right value;
its pyproject.toml declares an entry point of the group ``simbench`` naming a module that
implements the hook. One slow test really ``pip install -e``'s it (offline, no deps) and
uninstalls it afterwards; set SIMBENCH_SKIP_INSTALL_TEST=1 to skip it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pluggy
import pytest

import simbench
import simbench.registry
from simbench import hookspecs
from simbench.cli import main
from simbench.metrics.base import Metric
from simbench.registry import Registry

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "simbench-example-metric"
DIST_NAME = "simbench-example-metric"


def _toml():
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli", reason="Python 3.10 needs tomli to read TOML")
    return tomllib


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(PLUGIN_DIR / "pyproject.toml", "rb") as fh:
        return _toml().load(fh)


@pytest.fixture(scope="module")
def plugin_module() -> types.ModuleType:
    """The plugin's hook module, imported from the folder (no installation needed)."""
    added = str(PLUGIN_DIR) not in sys.path
    if added:
        sys.path.insert(0, str(PLUGIN_DIR))
    try:
        module = importlib.import_module("simbench_example_metric.metric")
    finally:
        if added:
            sys.path.remove(str(PLUGIN_DIR))
    assert Path(module.__file__).resolve().is_relative_to(PLUGIN_DIR)
    return module


@pytest.fixture(scope="module")
def registry(plugin_module) -> Registry:
    # entry_points=False: the same registry whether or not the plugin is pip-installed
    return Registry(entry_points=False, extra=[plugin_module])


def _fake_package(package: str, metric_name: str) -> types.ModuleType:
    module = types.ModuleType(package)

    class Fake(Metric):
        """A fake metric for the duplicate-name test."""

        name = metric_name

        def _compute(self, X, Y):
            return 0.5

    @hookspecs.hookimpl
    def simbench_register_metrics():
        return [Fake]

    module.simbench_register_metrics = simbench_register_metrics
    return module


def _brute_force_mean_corr(X: np.ndarray, Y: np.ndarray) -> float:
    """Independent reference: np.corrcoef and every injective matching (small d only)."""
    dx, dy = X.shape[1], Y.shape[1]
    R = np.corrcoef(X.T, Y.T)[:dx, dx:]
    if dx < dy:
        R, dx, dy = R.T, dy, dx
    best = max(R[list(p), np.arange(dy)].sum() for p in itertools.permutations(range(dx), dy))
    return best / dy


# -- discovery -------------------------------------------------------------------------


def test_plugin_appears_in_simbench_list(registry, monkeypatch, capsys):
    rec = registry.get("metric", "mean_corr")
    assert rec.package == "simbench_example_metric"  # attributed to the plugin, not simbench
    assert rec.summary.startswith("Mean Pearson correlation of optimally matched neurons")
    assert "mean_corr" not in [r.name for r in Registry(entry_points=False).records("metric")]

    monkeypatch.setattr(simbench.registry, "default_registry", lambda: registry)
    assert main(["list", "metric"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("metric")]
    (line,) = [ln for ln in lines if ln.split()[1] == "mean_corr"]
    assert "simbench_example_metric" in line and "Mean Pearson correlation" in line


def test_plugin_metadata_is_honest(registry):
    cls = registry.get("metric", "mean_corr").obj
    info = cls.info()
    assert info["symmetric"] is True and info["higher_is_better"] is True
    assert info["invariances"] == ["isotropic_scaling", "permutation", "translation"]
    assert info["streaming"] is True and info["consumes"] == "representations"
    assert cls.param_defaults() == {"absolute": False}


def test_plugin_computes_the_correct_value(registry):
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(250, 3))
    X = Z @ rng.normal(size=(3, 6)) + rng.normal(size=(250, 6))
    Y = Z @ rng.normal(size=(3, 4)) + 0.7 * rng.normal(size=(250, 4)) - 2.0
    metric = registry.create("metric", "mean_corr")
    expected = _brute_force_mean_corr(X, Y)
    assert abs(metric(X, Y) - expected) <= 1e-12 * abs(expected)
    assert abs(metric(Y, X) - expected) <= 1e-12 * abs(expected)
    # streaming (batch-accumulated moments) gives the same value
    acc = metric.accumulator()
    for rows in np.array_split(np.arange(250), 4):
        acc.update(X[rows], Y[rows])
    assert abs(metric(acc) - expected) <= 1e-10 * abs(expected)
    # a shifted, rescaled, permuted copy is a perfect match
    Yc = 3.0 * X[:, [2, 0, 5, 1, 4, 3]] + 7.0
    assert abs(metric(X, Yc) - 1.0) <= 1e-12


def test_plugin_parameters_are_validated(registry):
    assert registry.create("metric", "mean_corr", absolute=True).absolute is True
    with pytest.raises(ValueError, match="absolute"):
        registry.create("metric", "mean_corr", absolute="sometimes")
    with pytest.raises(ValueError, match="unexpected"):
        registry.create("metric", "mean_corr", absolut=True)


# -- packaging -------------------------------------------------------------------------


def test_pyproject_declares_the_entry_point(pyproject, plugin_module):
    project = pyproject["project"]
    assert project["name"] == DIST_NAME
    eps = project["entry-points"][hookspecs.ENTRY_POINT_GROUP]
    assert len(eps) == 1, "the example registers through exactly one entry point"
    (target,) = eps.values()
    module_name = target.split(":")[0]
    assert module_name == plugin_module.__name__
    # the module lives in a package setuptools will ship
    top = module_name.split(".")[0]
    assert (PLUGIN_DIR / top / "__init__.py").is_file()
    assert (PLUGIN_DIR / (module_name.replace(".", "/") + ".py")).is_file()
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert any(top == pat.rstrip("*") for pat in includes)
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"


def test_entry_point_module_implements_the_hook(plugin_module):
    # pluggy validates each hookimpl against simbench's hookspecs when registering
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin_module)
    impls = pm.hook.simbench_register_metrics.get_hookimpls()
    assert [i.plugin for i in impls] == [plugin_module]
    (classes,) = pm.hook.simbench_register_metrics()
    assert [c.name for c in classes] == ["mean_corr"]
    assert all(issubclass(c, simbench.Metric) for c in classes)
    for kind, hook_name in hookspecs.KIND_HOOKS.items():
        if kind != "metric":
            assert not getattr(pm.hook, hook_name).get_hookimpls()


def test_readme_starts_as_a_template():
    text = (PLUGIN_DIR / "README.md").read_text(encoding="utf-8")
    assert text.startswith("Copy this folder to add a metric")
    assert "pip install -e" in text and "simbench list" in text


# -- name clashes and typos --------------------------------------------------------------


def test_duplicate_name_names_both_packages(plugin_module):
    other = _fake_package("other_metrics_pkg", "mean_corr")
    with pytest.raises(simbench.DuplicatePluginError) as err:
        Registry(entry_points=False, extra=[plugin_module, other])
    msg = str(err.value)
    assert "'mean_corr'" in msg
    assert "simbench_example_metric" in msg and "other_metrics_pkg" in msg


def test_duplicate_of_a_builtin_names_simbench(plugin_module):
    if "cka" not in Registry(entry_points=False).names("metric"):
        pytest.skip("built-in cka not written yet")
    with pytest.raises(simbench.DuplicatePluginError, match=r"simbench and shadow_cka_pkg"):
        Registry(entry_points=False, extra=[plugin_module, _fake_package("shadow_cka_pkg", "cka")])


def test_unknown_name_suggests_the_closest(registry):
    with pytest.raises(simbench.UnknownPluginError, match=r"Did you mean 'mean_corr'"):
        registry.create("metric", "mean_cor")
    if "cka" not in registry.names("metric"):
        pytest.skip("built-in cka not written yet")
    with pytest.raises(simbench.UnknownPluginError, match=r"Did you mean 'cka'"):
        registry.create("metric", "ckaa")
    with pytest.raises(LookupError, match=r"'cka'"):
        simbench.get_metric("ckaa")


# -- a real installation (slow) -------------------------------------------------------------


def _installed() -> bool:
    try:
        importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    bool(os.environ.get("SIMBENCH_SKIP_INSTALL_TEST")), reason="SIMBENCH_SKIP_INSTALL_TEST is set"
)
def test_pip_install_editable_then_listed(tmp_path):
    if _installed():
        pytest.skip(f"{DIST_NAME} is already installed; not touching someone else's install")
    # setuptools writes these into the source folder; remove only what this test created
    artefacts = [PLUGIN_DIR / "simbench_example_metric.egg-info", PLUGIN_DIR / "build"]
    preexisting = {p for p in artefacts if p.exists()}
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [sys.executable, "-m", "pip"]
    install = [*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(PLUGIN_DIR)]
    try:
        done = subprocess.run(install, cwd=tmp_path, env=env, capture_output=True, text=True)
        if done.returncode != 0 and "No module named pip" in done.stderr:
            pytest.skip("this environment has no pip")
        assert done.returncode == 0, done.stdout + done.stderr
        listed = subprocess.run(
            [sys.executable, "-m", "simbench.cli", "list", "metric"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (line,) = [ln for ln in listed.splitlines() if ln.split()[1:2] == ["mean_corr"]]
        assert f"{DIST_NAME} 0.1.0" in line  # attributed to the distribution
        code = (
            "import numpy as np, simbench; x = np.arange(10.0); "
            "print(simbench.get_metric('mean_corr')(np.c_[x, x**2], np.c_[5*x**2 - 2, x/2]))"
        )
        value = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert value.returncode == 0, value.stderr
        # R = [[r, 1], [1, r]] with r = corr(x, x²) < 1: the swapped matching scores 1
        assert abs(float(value.stdout) - 1.0) <= 1e-12
    finally:
        subprocess.run([*pip, "uninstall", "-y", DIST_NAME], env=env, capture_output=True)
        for p in artefacts:
            if p.exists() and p not in preexisting:
                shutil.rmtree(p)
    assert not _installed()
