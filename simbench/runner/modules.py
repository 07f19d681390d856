"""``simbench.run(suite, models={...})`` and ``simbench.run(dict)``: suites built in Python.

Each in-memory module is registered with :func:`simbench.models.foreign.register_module`
(architecture ``module``, keyed by its content), its state dict written to
``<cache>/foreign/modules/<key>.safetensors``, and an entry ``{id, architecture: {name:
module, params: {key, ...}}, weights: that file}`` appended to the suite's ``models`` —
from there on it is a foreign-weights model like ``timm:...`` with ``weights:``
(:mod:`simbench.models.materialize`). A suite file's problems keep their line numbers when
no module is added; with modules the suite is re-serialised, so line numbers refer to
the combined text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from simbench.io import atomic_path

__all__ = ["suite_with_modules"]

_MODULE_KEYS = {"module", "normalization", "input_size", "layers", "init_variance"}


def _entry(mid: str, value: Any, cache_dir: Path) -> dict[str, Any]:
    from safetensors.torch import save_file
    from torch import nn

    from simbench.models.foreign import register_module

    spec = dict(value) if isinstance(value, Mapping) else {"module": value}
    unknown = set(spec) - _MODULE_KEYS
    if unknown:
        raise ValueError(
            f"models[{mid!r}]: unknown keys {sorted(unknown)}; allowed {sorted(_MODULE_KEYS)}"
        )
    module = spec.get("module")
    if not isinstance(module, nn.Module):
        raise ValueError(f"models[{mid!r}] must be a torch.nn.Module; got {type(module).__name__}")
    key = register_module(module)
    params: dict[str, Any] = {"key": key}
    for k in ("layers", "init_variance"):
        if spec.get(k) is not None:
            params[k] = spec[k]
    file = cache_dir / "foreign" / "modules" / f"{key}.safetensors"
    if not file.is_file():
        file.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
        with atomic_path(file) as tmp:
            save_file(state, str(tmp))
    entry: dict[str, Any] = {
        "id": mid,
        "architecture": {"name": "module", "params": params},
        "weights": str(file),
    }
    for k in ("normalization", "input_size"):
        if spec.get(k) is not None:
            entry[k] = spec[k]
    return entry


def suite_with_modules(suite: Any, models: Mapping[str, Any]) -> Any:
    """A :class:`~simbench.suite.Suite` of ``suite`` (path, dict or Suite) with ``models``
    added (see the module docstring)."""
    from simbench.suite import Suite, load_suite, parse_suite

    if isinstance(suite, Suite):
        raise ValueError(
            "pass the suite as a path or a dict to add models to it (a loaded Suite is final)"
        )
    if isinstance(suite, Mapping):
        data, file, base = dict(suite), "<dict>", Path.cwd()
    else:
        path = Path(suite)
        if not models:
            return load_suite(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        file, base = str(path), path.resolve().parent
        if not isinstance(data, dict):
            return load_suite(path)  # reports the problem with its line
    if models:
        from simbench.suite import _resolve_path

        if data.get("cache"):
            cache_dir = _resolve_path(str(data["cache"]), base)
        else:
            output = data.get("output") or f"runs/{data.get('name', 'suite')}"
            cache_dir = _resolve_path(str(output), base) / "cache"
        entries = [_entry(mid, v, cache_dir) for mid, v in models.items()]
        data["models"] = list(data.get("models") or []) + entries
    return parse_suite(yaml.safe_dump(data, sort_keys=False), file=file, base_dir=base)
