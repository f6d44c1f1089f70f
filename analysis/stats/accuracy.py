"""Final accuracy and time-to-accuracy, in the spirit of MLPerf Training's time-to-train.

The clock runs from the first step to the end of the step (round) after which the first evaluation reached the
target (``metrics/eval_step`` is the number, from 1, of the step the evaluation followed). MLPerf counts evaluation
inside the timed region; here training seconds are the sum of the steps' times
(:func:`analysis.stats.metrics.row_times`, warm-up included: it is part of getting there) and evaluation is
reported apart (``eval_and_io_s``), so a slower evaluation does not read as slower training. Bytes and samples
are summed over the same steps. Decoupled runs (``ps`` async, ``ssp``) evaluate only at the
end; their time to it is their training wall time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.data.load import RunResults
from analysis.stats.metrics import bytes_per_row, row_times, samples_per_row, schedule


@dataclass
class TimeToAccuracy:
    reached: bool
    rows: float  # steps or rounds taken (count, not index); NaN if not reached
    seconds: float
    bytes: float
    samples: float


NOT_REACHED = TimeToAccuracy(False, math.nan, math.nan, math.nan, math.nan)


def evaluations(run: RunResults) -> tuple[np.ndarray, np.ndarray]:
    """(number, from 1, of the step each evaluation followed, test accuracy); empty arrays if the run never
    evaluated."""
    acc = run.data.get("metrics/test_accuracy")
    if acc is None or not acc.size:
        return np.zeros(0, dtype=int), np.zeros(0)
    return run.data["metrics/eval_step"].astype(int), np.asarray(acc, dtype=np.float64)


def final_accuracy(run: RunResults) -> float:
    _, acc = evaluations(run)
    return float(acc[-1]) if acc.size else math.nan


def crossing(eval_steps: np.ndarray, accuracy: np.ndarray, target: float) -> int | None:
    """Index of the first evaluation with accuracy >= target, or None."""
    hit = np.flatnonzero(accuracy >= target)
    return int(hit[0]) if hit.size else None


def time_to_accuracy(run: RunResults, target: float) -> TimeToAccuracy:
    steps, acc = evaluations(run)
    k = crossing(steps, acc, target)
    if k is None:
        return NOT_REACHED
    last = int(steps[k])  # steps 1..steps[k] (rows 0..steps[k] - 1) were trained before this evaluation
    if schedule(run) == "decoupled":
        seconds = float(run.attrs.get("train_wall_s", math.nan))
    else:
        seconds = float(row_times(run, warmup=0)[:last].sum())
    moved = float(bytes_per_row(run)[:last].sum())
    samples = float(samples_per_row(run)[:last].sum())
    return TimeToAccuracy(True, float(last), seconds, moved, samples)
