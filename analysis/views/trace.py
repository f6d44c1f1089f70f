"""Chrome trace-event export (``python -m analysis trace run.h5 -o run.json``), for Perfetto or chrome://tracing.

A run records phase start times with ``bench train --trace`` (``timeline/*_start``, seconds from a common origin
all ranks left a barrier at) and every phase's duration anyway (``timing/*``); together they give one complete
("ph": "X") event per layer and phase: forward, backward, communication, plus the step itself. One process track
per rank (``pid`` = rank), one thread row per phase kind, times in microseconds, as the Trace Event Format
specifies (Google, "Trace Event Format", ``ph``/``ts``/``dur``/``pid``/``tid``).
"""

from __future__ import annotations

import json

import numpy as np

from analysis.data.load import ResultsError, RunResults

PHASES = (("forward", "timing/forward", 1), ("backward", "timing/backward", 2), ("comm", "timing/comm", 3))


def trace_events(run: RunResults, first: int = 0, steps: int | None = None) -> list[dict]:
    """Events for steps ``[first, first + steps)`` of every rank."""
    if "timeline/step_start" not in run.data:
        raise ResultsError(f"{run.path}: no timeline in the file (run bench train with --trace)")
    names = [str(n) for n in run.data["layers/name"]]
    starts = run.data["timeline/step_start"]
    ranks, total = starts.shape
    last = total if steps is None else min(total, first + steps)
    events: list[dict] = []
    for rank in range(ranks):
        events.append({"ph": "M", "name": "process_name", "pid": rank, "args": {"name": f"rank {rank}"}})
        for phase, _, tid in PHASES:
            events.append({"ph": "M", "name": "thread_name", "pid": rank, "tid": tid, "args": {"name": phase}})
        for step in range(first, last):
            dur = float(run.data["timing/step"][rank, step])
            if dur <= 0:
                continue  # a rank that never reached this step (decoupled strategies)
            ts = float(starts[rank, step])
            number = step + 1  # steps are numbered from 1, as printed and in the file's step scale
            events.append(_event(f"step {number}", "step", rank, 0, ts, dur, {"step": number}))
            for phase, series, tid in PHASES:
                begin = run.data[f"timeline/{phase}_start"][rank, step]
                length = run.data[series][rank, step]
                for layer in np.nonzero(length > 0)[0]:
                    args = {"step": number, "layer": names[layer]}
                    events.append(_event(names[layer], phase, rank, tid, begin[layer], length[layer], args))
    return events


def _event(name: str, cat: str, pid: int, tid: int, start_s: float, dur_s: float, args: dict) -> dict:
    return {
        "name": name,
        "cat": cat,
        "ph": "X",
        "pid": int(pid),
        "tid": int(tid),
        "ts": round(float(start_s) * 1e6, 3),
        "dur": round(float(dur_s) * 1e6, 3),
        "args": args,
    }


def write_trace(run: RunResults, path: str, first: int = 0, steps: int | None = None) -> int:
    events = trace_events(run, first, steps)
    with open(path, "w") as fh:
        json.dump({"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"source": run.path}}, fh)
    return len(events)
