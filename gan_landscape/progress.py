"""Progress of a long job (training iterations, images through Inception): a tqdm bar on a terminal;
elsewhere (Slurm, nohup, CI) a log line at least every `log_seconds` and at the end, with the count,
the rate, the ETA and a note (e.g. the latest losses)."""
import logging
import math
import sys
import time

from tqdm import tqdm


def hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    def __init__(self, label: str, total: int, initial: int = 0, log_seconds: float = 30.0,
                 unit: str = "it", logger: logging.Logger | None = None, stream=None):
        self.label, self.total, self.initial, self.unit = label, total, initial, unit
        self.log_seconds, self.log = log_seconds, logger or logging.getLogger("gan_landscape")
        self.t0 = self.last_line = time.time()
        self.done, self.note_text = initial, ""
        stream = stream or sys.stderr
        self.bar = tqdm(total=total, initial=initial, desc=label, unit=unit, mininterval=1.0,
                        dynamic_ncols=True, leave=False, file=stream) if stream.isatty() else None

    def rate(self) -> float:
        return (self.done - self.initial) / max(time.time() - self.t0, 1e-9)

    def elapsed(self) -> float:
        return time.time() - self.t0

    def tick(self, done: int) -> None:
        """`done` of `total` so far; off a terminal, a line when one is due (no host sync here)."""
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        if self.bar is None and (time.time() - self.last_line >= self.log_seconds or done == self.total):
            self.line()

    def update(self, n: int) -> None:
        self.tick(self.done + n)

    def note(self, text: str) -> None:
        self.note_text = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def line(self) -> None:
        rate = self.rate()
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        self.log.info(f"{self.label}: {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.1f}%)"
                      f" | {rate:.1f} {self.unit}/s | ETA {hms(eta)}" + (f" | {self.note_text}" if self.note_text else ""))
        self.last_line = time.time()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
