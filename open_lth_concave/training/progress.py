"""Progress of one training run: a live single-line bar on a terminal, open_lth's plain lines otherwise.

On a terminal the line is redrawn in place (at most every `interval` seconds, checked with one clock
read per step) with epoch, iteration, the last evaluated loss and accuracy, elapsed time and ETA, and
left as one final line when the run ends. Elsewhere (logs, pipes, tests) each evaluation prints the
plain tab-separated line the loop always printed. `quiet` prints nothing. The loss and accuracy shown
are those of the last evaluation, so the bar adds no device-to-host synchronization.
"""
from __future__ import annotations

import shutil
import sys
import time
from typing import Optional, TextIO

from open_lth_concave.foundations.step import Step


def warn(message: str) -> None:
    """A warning to the user: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, label: str, start: Step, end: Step, *, t0: Optional[float] = None, quiet: bool = False,
                 stream: Optional[TextIO] = None, live: Optional[bool] = None, interval: float = 0.25):
        self.label, self.start, self.end = label, start, end
        self.stream = stream if stream is not None else sys.stdout
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live = not quiet and (is_tty if live is None else live)
        self.plain = not quiet and not self.live
        self.t0 = time.time() if t0 is None else t0
        self.began = time.time()                   # this process's start, for the ETA's rate
        self.interval = interval
        self.next_draw = 0.0
        self.last: Optional[tuple[float, float]] = None  # (loss, accuracy) of the last evaluation
        self.at = start

    # ---- what the loop calls ----------------------------------------------------------------------
    def evaluation(self, at: Step, loss: float, accuracy: float, examples: int) -> None:
        self.last, self.at = (loss, accuracy), at
        if self.plain:
            print(f"{self.label}\tep {at.ep:03d}\tit {at.it:03d}\tloss {loss:.3f}\tacc {100 * accuracy:.2f}%"
                  f"\tex {examples}\ttime {time.time() - self.t0:.2f}s", file=self.stream, flush=True)
        elif self.live:
            self._draw()

    def step(self, at: Step) -> None:
        if self.live:
            now = time.monotonic()
            if now >= self.next_draw:
                self.at = at
                self._draw(now)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the live line (also when training stops with an error, so messages start on a new line)."""
        if self.live:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.live = False

    # ---- drawing ----------------------------------------------------------------------------------
    def line(self, width: int = 100) -> str:
        total = max(self.end.iteration - self.start.iteration, 1)
        done = min(max(self.at.iteration - self.start.iteration, 0), total)
        fraction = done / total
        elapsed = time.time() - self.t0
        rate_elapsed = time.time() - self.began
        eta = rate_elapsed / done * (total - done) if done and rate_elapsed > 0 else None
        end_ep = self.end.ep if self.end.it == 0 else self.end.ep + 1
        metrics = "" if self.last is None else f" test loss {self.last[0]:.3f} acc {100 * self.last[1]:.2f}%"
        text = (f" {100 * fraction:3.0f}% ep {self.at.ep}/{end_ep} it {self.at.it}{metrics} "
                f"{_clock(elapsed)}" + ("" if done == total else f" ETA {_clock(eta) if eta is not None else '--:--'}"))
        bar_width = max(10, min(30, width - len(self.label) - len(text) - 4))
        filled = int(round(bar_width * fraction))
        line = f"{self.label} [{'#' * filled}{'.' * (bar_width - filled)}]{text}"
        return line[:max(width - 1, 20)]

    def _draw(self, now: Optional[float] = None) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r" + self.line(width) + "\x1b[K")
        self.stream.flush()
        self.next_draw = (now if now is not None else time.monotonic()) + self.interval
