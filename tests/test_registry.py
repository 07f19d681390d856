"""The plugin registry: discovery, attribution, did-you-mean, duplicates, parameters, CLI."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import simbench
from simbench import hookspecs
from simbench.cli import main
from simbench.metrics.base import Metric
from simbench.registry import Registry


def test_builtins_register_through_the_entry_point_hooks():
    df = simbench.list_plugins()
    assert list(df.columns) == ["kind", "name", "package", "version", "summary"]
    builtin = df[df.package == "simbench"]
    for kind, name in [("metric", "cka"), ("metric", "rsa"), ("shrinkage", "gm")]:
        assert ((builtin.kind == kind) & (builtin.name == name)).any()
    assert set(df.kind) <= set(hookspecs.KINDS)
    assert (df.summary.str.len() > 0).all(), "every plugin needs a one-line docstring"


def test_unknown_name_suggests_closest():
    with pytest.raises(simbench.UnknownPluginError, match=r"Did you mean 'cka'"):
        simbench.get_metric("ckaa")
    with pytest.raises(LookupError, match=r"'procrustes_distance'"):
        simbench.get_metric("procrustes_dist")
    with pytest.raises(simbench.UnknownPluginError, match=r"Did you mean 'metric'"):
        simbench.list_plugins("metrc")


def test_invalid_parameter_names_the_parameter():
    with pytest.raises(ValueError, match="kernel"):
        simbench.get_metric("cka", kernel="cubic")
    with pytest.raises(ValueError, match="unexpected"):
        simbench.get_metric("cka", kernal="rbf")


def _fake_plugin(metric_name: str) -> types.ModuleType:
    module = types.ModuleType("fake_simbench_plugin")

    class Fake(Metric):
        """A fake metric for registry tests."""

        name = metric_name

        def _compute(self, X, Y):
            return 0.5

    @hookspecs.hookimpl
    def simbench_register_metrics():
        return [Fake]

    module.simbench_register_metrics = simbench_register_metrics
    return module


def test_third_party_module_is_attributed_to_its_package():
    reg = Registry(extra=[_fake_plugin("fake_metric")])
    rec = reg.get("metric", "fake_metric")
    assert rec.package == "fake_simbench_plugin"
    assert rec.summary == "A fake metric for registry tests."
    assert reg.create("metric", "fake_metric")([[1.0], [2.0]], [[1.0], [3.0]]) == 0.5


def test_duplicate_names_are_an_error_naming_both_packages():
    with pytest.raises(simbench.DuplicatePluginError, match=r"simbench and fake_simbench_plugin"):
        Registry(extra=[_fake_plugin("cka")])


def test_cli_list(capsys):
    assert main(["list", "metric"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["KIND", "NAME", "PACKAGE", "SUMMARY"]
    cka = next(line for line in out if line.split()[1] == "cka")
    assert cka.split()[0] == "metric" and "simbench" in cka and "kernel alignment" in cka


def test_cli_unknown_kind_exits_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "simbench.cli", "list", "metrics"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Did you mean 'metric'" in proc.stderr and "Traceback" not in proc.stderr
