"""What a long command shows: one line per phase on the terminal, the full log in a file.

`LogCapture` points file descriptors 1 and 2 at a log file, so Dagster's run logs, Python logging,
warnings, TensorFlow's C++ messages and child processes all land there; with `verbose` they are
copied to the terminal live as well. `Phases` writes to the real terminal: a tqdm bar while a phase
runs (on a terminal), then one line with its outcome and seconds. `count_materializations` keeps a
bar at the number of assets a Dagster run has materialized so far.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import dagster as dg
from tqdm import tqdm

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_path(home: Path, command: str) -> Path:
    """`$MOVIEREC_HOME/logs/<command>-<UTC timestamp>.log` (the folder is created)."""
    folder = home / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{command}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"


class LogCapture:
    """Inside the block, fds 1 and 2 write to `path` (and, if `verbose`, to the terminal too);
    `terminal` writes to where fd 1 pointed before. Python logging goes to the file at INFO."""

    def __init__(self, path: Path, verbose: bool = False) -> None:
        self.path, self.verbose = path, verbose
        self.terminal: TextIO = sys.stdout
        self._saved: dict[int, int] = {}
        self._pump: threading.Thread | None = None
        self._handler: logging.Handler | None = None
        self._others: list[logging.Handler] = []
        self._root_level = logging.WARNING
        self._streams: tuple[TextIO, TextIO] | None = None

    def __enter__(self) -> LogCapture:
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = {fd: os.dup(fd) for fd in (1, 2)}
        self.terminal = os.fdopen(os.dup(self._saved[1]), "w", buffering=1)
        target = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self.verbose:  # a pipe, copied to the file and to the terminal by a thread
            read_end, write_end = os.pipe()
            self._pump = threading.Thread(target=_copy, args=(read_end, target, os.dup(self._saved[1])), daemon=True)
            self._pump.start()
            target = write_end
        for fd in (1, 2):
            os.dup2(target, fd)
        os.close(target)
        # Python-level writers follow, even where sys.stdout/err were replaced (pytest, click's runner).
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - kept open: see __exit__
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        self._handler = logging.StreamHandler(sys.stderr)
        self._handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root = logging.getLogger()
        self._root_level = root.level
        # Only the file while inside: handlers others installed earlier may hold a stream that is
        # gone by now (absl's, bound to pytest's collection-time stderr once TensorFlow loads).
        self._others = list(root.handlers)
        for handler in self._others:
            root.removeHandler(handler)
        root.addHandler(self._handler)
        root.setLevel(min(root.level or logging.INFO, logging.INFO))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is not None:
            logging.getLogger("movierec").error("stopped by %s", kind.__name__ if kind else "?", exc_info=exc)
        if self._handler is not None:
            root = logging.getLogger()
            root.removeHandler(self._handler)
            for handler in self._others:
                root.addHandler(handler)
            root.setLevel(self._root_level)
        sys.stdout.flush()
        sys.stderr.flush()
        if self._streams:
            # Left open, not closed: a handler created inside the block (Dagster's, absl's) may
            # still hold them, and after the dup2 below they write to the restored fds 1 and 2.
            sys.stdout, sys.stderr = self._streams
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # also closes this process's last write end of the pipe
            os.close(saved)
        if self._pump is not None:
            self._pump.join(timeout=5)
        self.terminal.close()


def _copy(read_end: int, log_fd: int, terminal_fd: int) -> None:
    try:
        while chunk := os.read(read_end, 1 << 16):
            os.write(log_fd, chunk)
            os.write(terminal_fd, chunk)
    finally:
        for fd in (read_end, log_fd, terminal_fd):
            os.close(fd)


class Phase:
    """One phase's bar (None when bars are off) and the outcome its line reports."""

    def __init__(self, bar: tqdm | None) -> None:
        self.bar, self.outcome, self.failed = bar, "ok", False

    def grow(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.total = (self.bar.total or 0) + steps
            self.bar.refresh()

    def set_done(self, done: int) -> None:
        if self.bar is not None and done != self.bar.n:
            self.bar.update(done - self.bar.n)
            self.bar.refresh()  # now, not after tqdm's minimum interval


class Phases:
    """Numbered phase lines on `out`; bars only when `out` is a terminal and `bars` is on."""

    def __init__(self, out: TextIO, count: int, bars: bool = True) -> None:
        self.out, self.count, self.index = out, count, 0
        self.bars = bars and out.isatty()

    @contextmanager
    def phase(self, label: str, unit: str = "assets") -> Iterator[Phase]:
        self.index += 1
        name = f"[{self.index}/{self.count}] {label}"
        shape = "{desc} |{bar:20}| {n_fmt}/{total_fmt} {unit} {elapsed}" if unit else "{desc} ... {elapsed}"
        bar = tqdm(total=0, desc=name, unit=unit, file=self.out, leave=False, dynamic_ncols=True,
                   bar_format=shape) if self.bars else None
        current = Phase(bar)
        started = time.monotonic()
        try:
            yield current
        except BaseException:
            current.outcome, current.failed = "FAILED (see the log)", True
            raise
        finally:
            if bar is not None:
                bar.close()
            line = f"{name:<36} {current.outcome:<44} {time.monotonic() - started:6.1f} s"
            self.out.write(line + "\n")
            self.out.flush()
            logging.getLogger("movierec").info(line)

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


@contextmanager
def count_materializations(instance: Any, run_id: str, phase: Phase, offset: int = 0,
                           every_s: float = 0.5) -> Iterator[None]:
    """While the block runs the run `run_id`, keep `phase`'s bar at `offset` plus the run's
    materializations so far."""
    if phase.bar is None:
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every_s):
            phase.set_done(offset + _materializations(instance, run_id))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield
    finally:
        stop.set()
        poller.join()
        phase.set_done(offset + _materializations(instance, run_id))


def _materializations(instance: Any, run_id: str) -> int:
    try:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    except Exception:  # noqa: BLE001 - progress is cosmetic: never fail the run over it
        return 0
    return len(records)
