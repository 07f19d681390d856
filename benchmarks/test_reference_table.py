"""simbench agrees with every installed reference implementation (``reference_table.py``).

One test per entry of ``benchmarks/references/*.py``; an entry whose reference is not
installed (netrep needs ``SIMBENCH_REFERENCE_PATHS``; rsatoolbox, pyriemann, brainiak
come from PyPI: ``pip install -e '.[references]'``) is skipped. No timing is asserted.
"""

from __future__ import annotations

import pytest
from reference_table import load_references, run_entry

ENTRIES = load_references()


@pytest.mark.parametrize(
    "entry",
    ENTRIES,
    ids=[
        f"{e['metric']}-{'-'.join(f'{k}={v}' for k, v in e['params'].items()) or 'default'}"
        for e in ENTRIES
    ],
)
def test_agrees_with_reference(entry):
    row = run_entry(entry, repeats=1)
    if row["status"] != "ok":
        pytest.skip(f"{entry['source']}: {row['status']}")
    assert row["agree"], (
        f"{entry['metric']} {entry['params']} vs {entry['source']}: max |Δ| "
        f"{row['max_abs_delta']:.2e}; simbench {row['simbench']}, reference {row['reference']}"
    )


def test_unavailable_reference_is_reported_not_raised():
    def missing(X, Y):
        raise ImportError("no module named 'nowhere'", name="nowhere")

    row = run_entry({"metric": "cka", "params": {}, "source": "nowhere", "fn": missing})
    assert row["status"] == "not installed (nowhere)"
