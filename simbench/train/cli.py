"""``simbench train SPEC [--out DIR] [--epochs N] [--device D] [--no-progress]``.

``SPEC`` is a YAML file holding one ``ModelSpec``::

    architecture: {name: factorized_vgg, params: {width: 0.25}}
    dataset: {name: embedded}            # a bare name also works: ``dataset: embedded``
    seed: 0
    train: {epochs: 90, lr: 0.005}       # any TrainConfig field; defaults: GM B.3

``--epochs`` and ``--device`` override ``train.epochs`` / ``train.device`` (they are part
of the spec, hence of the checkpoint directory's key). An invalid spec prints each
offending key with pydantic's message and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUT = "checkpoints"


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to ``simbench``'s sub-parsers."""
    p = subparsers.add_parser(
        "train",
        help="train the model of a YAML ModelSpec; prints its checkpoint and test accuracy",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", type=Path, help="YAML file holding a ModelSpec")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_OUT),
        help=f"checkpoint root; the run goes to OUT/<spec key>/ (default: ./{DEFAULT_OUT})",
    )
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--device", default=None, help="override train.device (auto, cpu, cuda:0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return p


def _fail(message: str) -> int:
    print(f"simbench: error: {message}", file=sys.stderr)
    return 2


def _format_validation_error(exc: Any) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err.get("loc", ())) or "(top level)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        value = err.get("input")
        shown = "" if err.get("type") in ("missing", "extra_forbidden") else f" (got {value!r})"
        lines.append(f"  {loc}: {msg}{shown}")
    return "\n".join(lines)


def load_spec(path: Path, overrides: dict[str, Any] | None = None) -> Any:
    """Read and validate a YAML ``ModelSpec``; ``overrides`` update its ``train`` section.

    Raises ``ValueError`` with a readable message (file, key, problem) on any error.
    """
    import pydantic
    import yaml

    from simbench.train.config import ModelSpec

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read spec {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(
            f"{path}: a spec must be a mapping with keys architecture, dataset, seed, train; "
            f"got {type(raw).__name__}"
        )
    for key in ("architecture", "dataset"):
        if isinstance(raw.get(key), str):  # shorthand: a bare plugin name
            raw[key] = {"name": raw[key]}
    if overrides:
        train = raw.get("train") or {}
        if not isinstance(train, dict):
            raise ValueError(f"{path}: train must be a mapping; got {type(train).__name__}")
        raw["train"] = {**train, **overrides}
    try:
        return ModelSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ValueError(f"invalid spec {path}:\n{_format_validation_error(exc)}") from None


def _cmd_train(args: argparse.Namespace) -> int:
    import json

    import pydantic

    from simbench.errors import SimbenchError

    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.device is not None:
        overrides["device"] = args.device
    try:
        spec = load_spec(args.spec, overrides)
    except ValueError as exc:
        return _fail(str(exc))

    from simbench.train.checkpoint import sidecar_path
    from simbench.train.trainer import train

    if not args.no_progress and not sys.stderr.isatty():
        # no progress bar without a terminal (e.g. a batch job's log): one line per epoch
        import logging

        logger = logging.getLogger("simbench.train")
        if not logger.handlers and not logging.getLogger("simbench").handlers:  # -v: has one
            logger.addHandler(logging.StreamHandler(sys.stderr))
            logger.setLevel(logging.INFO)
    try:
        path = train(spec, args.out, progress=not args.no_progress)
    except pydantic.ValidationError as exc:  # a plugin's parameters
        return _fail(f"invalid plugin parameters in {args.spec}:\n{_format_validation_error(exc)}")
    except (SimbenchError, ValueError) as exc:
        return _fail(f"{args.spec}: {exc}")
    meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    acc = meta.get("test_accuracy")
    print(f"checkpoint: {path}")
    if acc is None:
        print(f"test accuracy: n/a (epoch {meta.get('epoch')})")
    else:
        print(f"test accuracy: {acc:.4f} (epoch {meta.get('epoch')})")
    return 0
