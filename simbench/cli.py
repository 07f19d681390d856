"""The ``simbench`` command line: run, train, compare, report, status, list."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from simbench.errors import SimbenchError

#: modules whose ``register(subparsers)`` adds a subcommand, in the order of the data flow
SUBCOMMAND_MODULES = (
    "simbench.runner.cli",  # simbench run
    "simbench.train.cli",  # simbench train
    "simbench.compare_cli",  # simbench compare
    "simbench.report",  # simbench report
    "simbench.runner.status_cli",  # simbench status
    "simbench.examples",  # simbench init
)


def _cmd_list(args: argparse.Namespace) -> int:
    from simbench.registry import default_registry

    records = default_registry().records(args.kind)
    if args.verbose:
        import json

        for r in records:
            info = r.obj.info() if hasattr(r.obj, "info") else {}
            print(json.dumps({**r.as_dict(), **info}, default=str))
        return 0
    headers = ("KIND", "NAME", "PACKAGE", "SUMMARY")
    rows = [(r.kind, r.name, f"{r.package} {r.version}", r.summary) for r in records]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers[:3])]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    print(fmt.format(*headers))
    for row in rows:
        print(fmt.format(*row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simbench",
        description="Benchmark neural-network similarity metrics, layer by layer.",
    )
    from simbench import __version__

    parser.add_argument("--version", action="version", version=f"simbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list installed plugins: kind, name, package, summary")
    p_list.add_argument("kind", nargs="?", default=None, help="only this plugin kind")
    p_list.add_argument("-v", "--verbose", action="store_true", help="JSON lines with metadata")
    p_list.set_defaults(func=_cmd_list)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    for p in sub.choices.values():
        _add_verbosity(p)
    return parser


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` and ``-v/--verbose`` on a sub-command, where it has not its own."""
    have = set(p._option_string_actions)
    if "--quiet" not in have:
        p.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    if "--verbose" not in have:
        p.add_argument(
            "-v", "--verbose", action="store_true", help="print more (simbench's log at INFO)"
        )


def _verbosity(args: argparse.Namespace) -> int:
    """-1 quiet, 0 normal, 1 verbose (``--quiet`` wins over ``--verbose``)."""
    if getattr(args, "quiet", False):
        return -1
    return 1 if getattr(args, "verbose", False) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbosity = _verbosity(args)
    if args.verbosity > 0:  # simbench's loggers (training epochs, resumes) at INFO
        import logging

        log = logging.getLogger("simbench")
        if not log.handlers:
            log.addHandler(logging.StreamHandler(sys.stderr))
        log.setLevel(logging.INFO)
    try:
        if args.verbosity < 0:  # results go to files; stdout is informational
            import contextlib
            import os

            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                return args.func(args)
        return args.func(args)
    except SimbenchError as exc:
        print(f"simbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
