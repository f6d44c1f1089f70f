"""Results as one long-form table for pandas users: ``to_dataframe(paths)``.

One row per (run, rank, step) with every per-step series as a column, or per (run, rank, step, layer) with the
per-layer series (``layers=True``). Columns carry the units in their names (``timing/step [s]``); each row also
has the rank's role and the run's config (``config/<option>``), so a frame groups by any option without the
files. A series only the aggregator records (``fedavg/aggregator_*``) is NaN on the other ranks, not 0, so a mean
over ranks is the aggregator's; in decoupled runs (``ps`` async, ``ssp``) a rank's rows past the steps it took
(``timing/steps_done``) are NaN too (the file holds zeros there). pandas is an optional extra
(``pip install '.[analysis]'``); the rest of analysis does not need it.
"""

from __future__ import annotations

import json
import os

import numpy as np

from analysis.data.load import RunResults, load


def _columns(run: RunResults, ndim: int) -> list[str]:
    steps = run.data["timing/step"].shape
    return [
        name
        for name in run.data
        if name.startswith(("timing/", "metrics/loss", "ps/", "fedavg/", "compress/"))
        and len(run.data[name].shape) == ndim
        and run.data[name].shape[:2] == steps
    ]


def run_frame(run: RunResults, layers: bool = False):
    import pandas as pd

    ranks, steps = run.data["timing/step"].shape
    cols = _columns(run, 3 if layers else 2)
    names = [str(n) for n in run.data["layers/name"]] if layers else []
    shape = (ranks, steps, len(names)) if layers else (ranks, steps)
    index = np.indices(shape).reshape(len(shape), -1)
    roles = list(run.attrs.get("roles") or ["peer"] * ranks)
    frame = {"run": run.name, "strategy": run.strategy, "rank": index[0], "role": np.array(roles)[index[0]]}
    frame["step"] = index[1] + 1  # numbered from 1, as printed and as the file's step (round) scale
    if layers:
        frame["layer"] = np.array(names)[index[2]] if names else []
    done = np.asarray(run.data["timing/steps_done"]) if "timing/steps_done" in run.data else np.full(ranks, steps)
    not_taken = np.arange(steps)[None, :] >= done[:, None]  # (ranks, steps): rows a rank never reached
    for name in cols:
        unit = run.units.get(name, "")
        values = np.asarray(run.data[name], dtype=np.float64).copy()
        if name.startswith(AGGREGATOR_ONLY):
            values[np.array(roles) != "aggregator"] = np.nan
        values[not_taken] = np.nan
        frame[f"{name} [{unit}]" if unit else name] = values.reshape(-1)
    for key, value in sorted(run.config.items()):
        frame[f"config/{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return pd.DataFrame(frame)


AGGREGATOR_ONLY = ("fedavg/aggregator_",)
"""Series recorded by the aggregator (rank 0) alone: the other ranks' rows hold no value."""


def to_dataframe(paths, layers: bool = False):
    """Long-form pandas DataFrame of every run in ``paths`` (results files; micro files are skipped)."""
    import pandas as pd

    runs = [load(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    frames = [run_frame(r, layers) for r in runs if r.attrs.get("kind") != "micro"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
