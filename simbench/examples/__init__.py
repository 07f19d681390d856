"""Example suites shipped inside the package, and ``simbench init``.

``simbench run --example quickstart`` runs the packaged quickstart (its relative paths,
``runs/quickstart``, resolved against the working directory); ``simbench init [DIR]``
writes it to ``DIR/quickstart.yaml`` to be edited, then ``simbench run quickstart.yaml``.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

from simbench.errors import SimbenchError

__all__ = ["example_names", "example_text", "register", "write_example"]


def example_names() -> list[str]:
    """Names of the packaged example suites (``quickstart``)."""
    files = resources.files(__name__)
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


def example_text(name: str) -> str:
    """The YAML text of the packaged example ``name``; ``SimbenchError`` naming the
    available ones for another name."""
    if name not in example_names():
        raise SimbenchError(f"no example suite {name!r}; available: {', '.join(example_names())}")
    return (resources.files(__name__) / f"{name}.yaml").read_text(encoding="utf-8")


def write_example(
    folder: str | Path = ".", name: str = "quickstart", *, force: bool = False
) -> Path:
    """Write the example ``name`` to ``folder/<name>.yaml`` and return the path; an
    existing file is kept (``SimbenchError``) unless ``force``."""
    target = Path(folder) / f"{name}.yaml"
    if target.exists() and not force:
        raise SimbenchError(f"{target} exists; use --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    from simbench.runner.cache import atomic_write_bytes

    atomic_write_bytes(target, example_text(name).encode("utf-8"))
    return target


def _cmd_init(args: argparse.Namespace) -> int:
    path = write_example(args.folder, args.example, force=args.force)
    if not args.quiet:
        print(f"wrote {path}; run it with: simbench run {path}")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``init`` sub-command to ``simbench``'s sub-parsers."""
    p = subparsers.add_parser(
        "init",
        help="write the quickstart suite (quickstart.yaml) into a folder, to edit and run",
        description="Writes FOLDER/quickstart.yaml (the commented reference of the suite "
        "format); `simbench run FOLDER/quickstart.yaml` then trains and compares four small "
        "VGG-11s in about a minute on a CPU.",
    )
    p.add_argument("folder", nargs="?", default=".", type=Path, help="default: here")
    p.add_argument("--example", default="quickstart", help="which packaged example")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_cmd_init)
    return p
