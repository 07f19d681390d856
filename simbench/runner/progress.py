"""Progress of a stage: a tqdm bar on a terminal, heartbeat lines otherwise.

Without a terminal (a batch job's log, a pipe, CI) a bar is invisible until its stage
ends, so :class:`Heartbeat` prints ``<stage>: started N jobs`` at once, then
``<stage>: k/N jobs done, t s`` every ``interval_s`` seconds
(``SIMBENCH_HEARTBEAT_S``, default 30) while the stage runs, from a daemon thread.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Heartbeat", "heartbeat_interval", "stage_progress"]


def heartbeat_interval() -> float:
    """Seconds between heartbeat lines: ``SIMBENCH_HEARTBEAT_S`` (a positive number),
    default 30."""
    raw = os.environ.get("SIMBENCH_HEARTBEAT_S", "")
    try:
        value = float(raw)
    except ValueError:
        return 30.0
    return value if value > 0 else 30.0


class Heartbeat:
    """``update(n)``/``close()`` like a tqdm bar; prints through ``say``."""

    def __init__(self, stage: str, total: int, say: Callable[[str], None], interval_s: float):
        self.stage, self.total, self.say = stage, total, say
        self.done = 0
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        say(f"{stage}: started {total} job{'s' if total != 1 else ''}")
        self._thread = threading.Thread(target=self._beat, args=(interval_s,), daemon=True)
        self._thread.start()

    def _beat(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            with self._lock:
                done = self.done
            elapsed = time.perf_counter() - self._t0
            self.say(f"{self.stage}: {done}/{self.total} jobs done, {elapsed:.0f} s")

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def stage_progress(
    stage: str, total: int, say: Callable[[str], None] | None, *, stream: Any = None
) -> Any:
    """A tqdm bar on stderr when stdout is a terminal, else a :class:`Heartbeat` through
    ``say`` (nothing at all when ``say`` is None: a quiet run)."""
    stream = stream if stream is not None else sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if tty or say is None:
        from tqdm.auto import tqdm

        disable = None if say is not None else True
        return tqdm(
            total=total, desc=stage, unit="job", leave=False, disable=disable, file=sys.stderr
        )
    return Heartbeat(stage, total, say, heartbeat_interval())
