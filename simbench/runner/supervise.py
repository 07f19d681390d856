"""Worker processes the runner can stop: per-job and per-cell time limits, Ctrl-C.

A computation inside a process cannot be interrupted safely (a metric may hang inside
LAPACK, holding no Python frame), so jobs whose time is limited run in worker
processes that the parent kills (``SIGKILL``) when a limit passes:
:class:`SupervisedPool` keeps ``n`` workers, sends each one job at a time over a pipe
and watches the clock. A score job reports each cell it starts (:func:`cell_started`),
so a cell over ``run.cell_timeout_s`` is known by its key; the pool returns a
:class:`TimeLimitExceeded` for that job and the driver records the cell and resubmits
the job's remaining cells. On ``KeyboardInterrupt`` (Ctrl-C) every worker is killed
at once, without waiting for it.

Workers start from a ``forkserver`` (or ``spawn``) context, so plugins registered only
in the parent process (``Registry(extra=[module])`` made the default, as tests do) are
forwarded to them: every plugin class of the parent's default registry that pickles by
reference and that the worker's own registry lacks is registered there too.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

__all__ = ["Limits", "SupervisedPool", "TimeLimitExceeded", "WorkerDied", "cell_started"]

#: seconds between checks of the clock while jobs run
POLL_S = 0.1


@dataclass(frozen=True)
class Limits:
    """Time limits of one stage's jobs in seconds (``None``: none)."""

    job_s: float | None = None
    cell_s: float | None = None

    def __bool__(self) -> bool:
        return self.job_s is not None or self.cell_s is not None


class TimeLimitExceeded(RuntimeError):
    """A job (``what="job"``) or one of its cells (``"cell"``, ``label`` its key) ran longer
    than its limit; its worker was killed."""

    def __init__(self, what: str, limit_s: float, label: str = "") -> None:
        super().__init__(what, limit_s, label)
        self.what, self.limit_s, self.label = what, limit_s, label

    def __str__(self) -> str:
        return f"the {self.what} ran longer than run.{self.what}_timeout_s = {self.limit_s:g} s"


class WorkerDied(RuntimeError):
    """The worker process running a job died (killed, out of memory, a crash)."""


# ----------------------------------------------------------------------------- worker side

_conn: Any = None  # this worker's pipe to the parent (None outside supervised workers)


def cell_started(label: str | None) -> None:
    """Tell the supervising parent that the cell ``label`` starts now (``None``: no cell
    runs, e.g. while waiting for a lock). A no-op outside supervised workers."""
    if _conn is not None:
        _conn.send(("cell", label))


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
        return fn(item)
    except Exception as exc:  # one failing job never stops the others
        return exc


def _install_plugins(payload: list[tuple[str, bytes]]) -> None:
    """Make the default registry of this worker also hold the plugins of ``payload``
    (``(kind, pickled class)``; those that cannot be imported here are left out), priming
    its cache so that every holder of ``default_registry`` sees them."""
    from simbench import hookspecs, registry
    from simbench.hookspecs import hookimpl

    plugins = []
    for kind, blob in payload:
        with contextlib.suppress(Exception):
            plugins.append((kind, pickle.loads(blob)))
    have = registry.default_registry()
    missing = [(k, obj) for k, obj in plugins if (k, obj.name) not in have._records]
    if not missing:
        return
    module = types.ModuleType("simbench_forwarded_plugins")

    def impl(objs: list[Any]) -> Callable[[], list[Any]]:
        def register() -> list[Any]:
            return list(objs)

        return register

    for kind, hook in hookspecs.KIND_HOOKS.items():
        objs = [obj for k, obj in missing if k == kind]
        if objs:
            setattr(module, hook, hookimpl(impl(objs), specname=hook))
    reg = registry.Registry(extra=[module])
    registry.default_registry.cache_clear()
    original = registry.Registry
    registry.Registry = lambda: reg  # type: ignore[misc,assignment]
    try:
        registry.default_registry()
    finally:
        registry.Registry = original  # type: ignore[misc]


def _orphan_watch(alive: Any) -> None:
    """Exit when the runner is gone (killed with ``SIGKILL``: nothing killed us): the
    runner holds the other end of ``alive`` and never writes, so reading returns only at
    its death. A worker stuck in a hung metric must not outlive its run."""
    with contextlib.suppress(EOFError, OSError):
        alive.recv()
    os._exit(1)


def _worker(
    conn: Any, alive: Any, threads: int, gpu: int | None, plugins: list[tuple[str, bytes]]
) -> None:
    global _conn
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
    threading.Thread(target=_orphan_watch, args=(alive,), daemon=True).start()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    import torch

    torch.set_num_threads(max(1, threads))
    _install_plugins(plugins)
    _conn = conn
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, item = task
        conn.send(("begin", None))  # the job's clock starts now, not while we started up
        result = _call(fn, item)
        try:
            conn.send(("done", result))
        except Exception as exc:  # an unpicklable result or exception
            conn.send(("done", RuntimeError(f"{type(result).__name__} (unpicklable): {exc}")))


def _plugin_payload() -> list[tuple[str, bytes]]:
    """The parent's plugin classes that pickle (by reference: module-level classes)."""
    from simbench.registry import default_registry

    out = []
    for rec in default_registry().records():
        with contextlib.suppress(Exception):
            out.append((rec.kind, pickle.dumps(rec.obj)))
    return out


# ----------------------------------------------------------------------------- parent side


@dataclass
class _Worker:
    proc: Any
    conn: Any
    alive: Any  # the write end of the worker's liveness pipe (see _orphan_watch)
    index: int | None = None  # the item it runs
    started: float | None = None  # when it began the item
    cell: tuple[str, float] | None = None  # (label, since)


class SupervisedPool:
    """``n`` worker processes that run jobs under time limits (module docstring).

    ``threads``: torch/BLAS threads per worker (the caller sets the BLAS environment
    variables before the workers start); ``gpus``: one GPU index per worker
    (``CUDA_VISIBLE_DEVICES``), or ``None``.
    """

    def __init__(self, n: int, ctx: Any, threads: int, gpus: Sequence[int] | None = None) -> None:
        self.n, self.ctx, self.threads = n, ctx, threads
        self.gpus = list(gpus) if gpus is not None else None
        self._slots: list[_Worker | None] = [None] * n
        self._plugins = _plugin_payload()

    def _start(self, slot: int) -> _Worker:
        parent, child = self.ctx.Pipe()
        alive_r, alive_w = self.ctx.Pipe(duplex=False)
        gpu = self.gpus[slot] if self.gpus is not None else None
        args = (child, alive_r, self.threads, gpu, self._plugins)
        proc = self.ctx.Process(target=_worker, args=args, daemon=True)
        proc.start()
        child.close()
        alive_r.close()
        w = _Worker(proc, parent, alive_w)
        self._slots[slot] = w
        return w

    def _drop(self, slot: int) -> None:
        w = self._slots[slot]
        self._slots[slot] = None
        if w is not None:
            with contextlib.suppress(Exception):
                w.proc.kill()
            w.conn.close()
            w.alive.close()
            w.proc.join(timeout=1.0)

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        progress: Callable[[int], None] | None = None,
        limits: Limits | None = None,
    ) -> list[Any]:
        """``fn`` on every item; one result per item, in order: the return value, the
        job's exception, :class:`TimeLimitExceeded` or :class:`WorkerDied`."""
        limits = limits or Limits()
        results: list[Any] = [None] * len(items)
        todo = list(range(len(items)))[::-1]
        try:
            while todo or any(w is not None and w.index is not None for w in self._slots):
                for slot in range(self.n):
                    w = self._slots[slot]
                    if todo and (w is None or w.index is None):
                        w = w if w is not None and w.proc.is_alive() else self._start(slot)
                        i = todo.pop()
                        w.conn.send((fn, items[i]))
                        w.index, w.started, w.cell = i, None, None
                busy = [(s, w) for s, w in enumerate(self._slots) if w and w.index is not None]
                ready = set(wait([w.conn for _, w in busy] + [w.proc.sentinel for _, w in busy],
                                 timeout=POLL_S))  # fmt: skip
                now = time.monotonic()
                for slot, w in busy:
                    i = w.index
                    assert i is not None
                    done, died = self._receive(w, now) if w.conn in ready else (None, False)
                    if done is not None:
                        results[i], w.index = done[0], None
                    elif died or (w.proc.sentinel in ready and not w.conn.poll()):
                        w.proc.join(timeout=1.0)  # its pipe closed: it is exiting
                        code = w.proc.exitcode
                        results[i] = WorkerDied(
                            f"the worker process running this job died (exit code {code})"
                        )
                        self._drop(slot)
                    elif (
                        limits.job_s is not None
                        and w.started is not None
                        and now - w.started > limits.job_s
                    ):
                        results[i] = TimeLimitExceeded("job", limits.job_s)
                        self._drop(slot)
                    elif (
                        limits.cell_s is not None
                        and w.cell is not None
                        and now - w.cell[1] > limits.cell_s
                    ):
                        results[i] = TimeLimitExceeded("cell", limits.cell_s, w.cell[0])
                        self._drop(slot)
                    else:
                        continue
                    if progress is not None:
                        progress(1)
        except BaseException:
            self.kill()  # Ctrl-C (or a bug): stop every worker now, wait for none
            raise
        return results

    @staticmethod
    def _receive(w: _Worker, now: float) -> tuple[tuple[Any] | None, bool]:
        """Read every message waiting on ``w``'s pipe: ``((result,) or None, died)``."""
        try:
            while w.conn.poll():
                kind, value = w.conn.recv()
                if kind == "done":
                    return (value,), False
                if kind == "begin":
                    w.started = now
                else:
                    w.cell = (value, now) if value is not None else None
        except (EOFError, OSError):
            return None, True
        return None, False

    def kill(self) -> None:
        """Kill every worker (``SIGKILL``) without waiting for its job."""
        for slot in range(self.n):
            self._drop(slot)

    def close(self) -> None:
        """Let idle workers exit; kill any still running after a second."""
        for w in self._slots:
            if w is not None:
                with contextlib.suppress(Exception):
                    w.conn.send(None)
        deadline = time.monotonic() + 1.0
        for w in self._slots:
            if w is not None:
                w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
        self.kill()
