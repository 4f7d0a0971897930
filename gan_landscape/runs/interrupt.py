"""Signals that end a run cleanly: SIGTERM (Slurm's preemption and scancel), SIGINT (Ctrl-C) and
SIGUSR1/SIGUSR2 (Slurm's `--signal` warning before a time limit).

Inside `catching()` a signal only sets a flag; the training loop reads it once per iteration,
finishes that iteration, writes a checkpoint and raises `Interrupted`, and gl-train ends with one
line and exit status 128 + signal. A second Ctrl-C stops at once (KeyboardInterrupt).

Under submitit (hydra/launcher=slurm) submitit has its own SIGUSR2 handler (requeue the job) and
SIGTERM handler (ignore it); `hand_over` runs the handler that was there before ours, so the job is
requeued only after the checkpoint is written, and resumes from it.
"""
import contextlib
import signal
import sys
import threading

from signal import SIGINT, SIGTERM, SIGUSR1, SIGUSR2

SIGNALS = (SIGTERM, SIGINT, SIGUSR1, SIGUSR2)
INTERRUPTED = "interrupted"  # a run's status (summary.json) after a signal

_pending: list[int] = []
_previous: dict[int, object] = {}


class Interrupted(BaseException):
    """Raised after the checkpoint of a signalled run is written. A BaseException, like
    KeyboardInterrupt, so that no `except Exception` records the run as failed."""

    def __init__(self, signum: int, step: int, total: int):
        self.signum, self.step, self.total = signum, step, total
        super().__init__(f"interrupted by {name(signum)} at iteration {step} of {total}; "
                         "checkpoint written; the same command resumes")


def name(signum: int) -> str:
    return signal.Signals(signum).name


def pending() -> int | None:
    """The first signal caught since `catching()` began, else None (a cheap read, every iteration)."""
    return _pending[0] if _pending else None


def _handler(signum, frame) -> None:
    if signum == SIGINT and SIGINT in _pending:
        raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait for the checkpoint
    if signum not in _pending:
        _pending.append(signum)


@contextlib.contextmanager
def catching():
    """Turn SIGNALS into `pending()` for the duration; restore the handlers that were there. A
    no-op off the main thread (Python delivers signals only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pending.clear()
    saved = {s: signal.signal(s, _handler) for s in SIGNALS}
    _previous.clear()
    _previous.update(saved)
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
        _pending.clear()


def hand_over(signum: int) -> None:
    """Run the handler that was installed before ours (submitit's: requeue and exit), if any."""
    previous = _previous.get(signum)
    if callable(previous) and previous not in (signal.default_int_handler,):
        previous(signum, None)


def stop_on_ctrl_c(tool: str, fn, *args):
    """fn(*args), for gl-eval and gl-landscape: Ctrl-C ends the tool with one line and exit 130.
    Their caches and results are written whole or not at all (files.atomic_write_bytes removes its
    temp file on any exception), so what was written before stays and nothing partial does."""
    try:
        return fn(*args)
    except KeyboardInterrupt:
        print(f"{tool}: stopped by Ctrl-C; results written before it are kept, nothing partial",
              file=sys.stderr)
        sys.exit(128 + SIGINT)
