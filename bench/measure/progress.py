"""Progress on rank 0: a tqdm bar (steps, rate, ETA, loss) on a terminal; in a log file (Slurm output) a plain
line every ~10% instead of carriage-return redraws."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, enabled: bool, unit: str = "step", start: int = 0):
        """``start``: rows a resumed run already has (the bar continues from there; rate and ETA from this
        segment's rows)."""
        self.total, self.enabled, self.unit, self.start = total, enabled, unit, start
        self.count = start
        self.bar = None
        self._t0 = time.perf_counter()
        self._next_line = max(1, total // 10)
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update(self, **postfix) -> None:
        if not self.enabled:
            return
        self.count += 1
        text = " ".join(f"{k}={v:.4g}" for k, v in postfix.items() if v is not None)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text, refresh=False)
        elif self.count % self._next_line == 0 or self.count == self.total:
            elapsed = time.perf_counter() - self._t0
            eta = elapsed / (self.count - self.start) * (self.total - self.count)
            sys.stderr.write(
                f"[{self.count}/{self.total} {self.unit}s] {elapsed:.1f}s elapsed, ETA {eta:.1f}s {text}\n"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
