"""Built-in executor ``local`` (a process pool; one training job per GPU) and the helpers
the ``slurm`` executor (:mod:`simbench.runner.slurm`) shares with it. Executors follow
:class:`simbench.runner.base.Executor`: ``map(fn, items)`` returns one result per item, in
order, an ``Exception`` instance for a job that failed. They also accept
``progress=callback`` (called with 1 after each finished job), and ``map_training`` runs
training jobs (one per GPU, or one at a time with every core).

Jobs write their outputs into the suite's cache folder themselves (atomically), so the
only thing that travels back is a small summary.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from simbench.runner.base import Executor
from simbench.runner.supervise import Limits, SupervisedPool

Progress = Callable[[int], None] | None

__all__ = ["LocalExecutor", "run_chunk"]


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
        return fn(item)
    except Exception as exc:  # one failing job never stops the others
        return exc


def run_chunk(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(item) or its exception for item in items]`` (several jobs in one task)."""
    return [_call(fn, item) for item in items]


_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _blas_env(threads: int) -> Iterator[None]:
    """Environment for starting worker processes: BLAS/OpenMP pools of ``threads`` threads
    (read when a process loads numpy/torch; workers of a pool share the cores, and
    oversubscribed BLAS threads slow small products down tenfold)."""
    saved = {k: os.environ.get(k) for k in _BLAS_VARS}
    os.environ.update({k: str(threads) for k in _BLAS_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _context(method: str) -> Any:
    if method == "forkserver" and "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # workers fork from a server that has already imported the heavy modules
        ctx.set_forkserver_preload(["simbench.runner._warm"])
        return ctx
    return multiprocessing.get_context("spawn")


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - a broken CUDA install counts as none
        return 0


class LocalExecutor(Executor):
    """Local processes: a pool over the cores; training one job per GPU (else inline).

    ``workers``: pool size (default ``os.cpu_count()``); ``workers=1`` runs every job
    inline in the calling process, except jobs under a time limit (``run:`` in the
    suite; score cells have one by default), which run in one worker process that is
    killed when the limit passes (:mod:`simbench.runner.supervise`). Each pool process
    gets ``cores // workers`` torch threads. ``start_method``: ``forkserver`` (workers
    fork from a server that has imported torch once; falls back to ``spawn`` where
    unavailable) or ``spawn``.
    """

    name = "local"

    def __init__(
        self,
        workers: Annotated[int, Field(ge=1)] | None = None,
        start_method: Literal["forkserver", "spawn"] = "forkserver",
        train_workers: Annotated[int, Field(ge=1)] = 1,
    ) -> None:
        self.workers = workers
        self.start_method = start_method
        #: training jobs at once on a machine without a GPU (default 1: one job, in this
        #: process, with every core); ``train_workers: 2`` on 2 cores trains two small
        #: models at once with one torch thread each, which for CPU-sized CNNs is faster
        #: than one model on both cores (1 thread ran 3-9x faster than 2 on a busy
        #: 2-core machine, issue #11)
        self.train_workers = train_workers
        self._pools: dict[int, SupervisedPool] = {}

    @property
    def n_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        progress: Progress = None,
        limits: Limits | None = None,
    ) -> list[Any]:
        """``fn`` on every item: inline for one worker or one item (unless time ``limits``
        apply: then in a worker process that can be killed), else a process pool."""
        items = list(items)
        n = min(self.n_workers, len(items))
        if n <= 1 and not limits:
            return self._inline(fn, items, progress)
        n = max(n, 1)
        threads = max(1, (os.cpu_count() or 1) // n)
        return self._run(self._reusable(n, threads), fn, items, progress, limits, threads)

    def map_training(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        progress: Progress = None,
        limits: Limits | None = None,
    ) -> list[Any]:
        """Training jobs: one process per GPU when there are several GPUs; without a GPU,
        ``train_workers`` processes with ``cores // train_workers`` threads each when it is
        above 1; otherwise one job at a time in this process (the GPU, or torch with
        every core), or in one worker process when a time limit applies."""
        items = list(items)
        gpus = _gpu_count()
        n = min(gpus, len(items), self.n_workers if self.workers else gpus)
        if gpus == 0 and self.train_workers > 1:  # CPU: train_workers jobs at once
            n = min(self.train_workers, len(items))
        if n <= 1 and not limits:
            return self._inline(fn, items, progress)
        threads = max(1, (os.cpu_count() or 1) // max(n, 1))
        ids = list(range(n)) if n > 1 and gpus > 1 else None
        with _blas_env(threads):
            pool = SupervisedPool(max(n, 1), _context(self.start_method), threads, ids)
        try:
            return self._run(pool, fn, items, progress, limits, threads)
        finally:
            pool.close()

    @staticmethod
    def _inline(fn: Callable[[Any], Any], items: list[Any], progress: Progress) -> list[Any]:
        out = []
        for item in items:
            out.append(_call(fn, item))
            if progress is not None:
                progress(1)
        return out

    def _run(
        self,
        pool: SupervisedPool,
        fn: Callable[[Any], Any],
        items: list[Any],
        progress: Progress,
        limits: Limits | None,
        threads: int,
    ) -> list[Any]:
        try:
            with _blas_env(threads):  # workers start (spawn, forkserver) on first use
                if pool.ctx.get_start_method() == "forkserver":
                    from multiprocessing import forkserver

                    forkserver.ensure_running()
                return pool.map(fn, items, progress, limits)
        except BaseException:  # Ctrl-C: the pool killed its workers; kill the others too
            self.kill()
            raise

    def _reusable(self, n: int, threads: int) -> SupervisedPool:
        """The pool of ``n`` workers, kept across calls (stages) until :meth:`close`."""
        pool = self._pools.get(n)
        if pool is None:
            pool = SupervisedPool(n, _context(self.start_method), threads)
            self._pools[n] = pool
        return pool

    def kill(self) -> None:
        """Kill every worker process now (Ctrl-C), waiting for no job."""
        for pool in self._pools.values():
            pool.kill()
        self._pools.clear()

    def close(self) -> None:
        """Shut the worker processes down (the runner calls it at the end of a run)."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_pools"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pools = {}
