"""Tables beyond speedup and the communication split: the top layers by communication, the strategy comparison
(same model, data and ranks), FedAvg rounds, and the cost model's predictions beside the measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis import costmodel
from analysis.metrics import comm_split, compute_ranks, layer_split, step_stats
from analysis.tables import Table


def top_layers(runs, warmup: int, top: int = 5) -> Table:
    rows = []
    for run in runs:
        if run.strategy == "fedavg":
            continue
        for r in sorted(layer_split(run, warmup), key=lambda r: -r["comm_s"])[:top]:
            rows.append(
                [
                    Path(run.path).name,
                    run.strategy,
                    r["layer"],
                    r["comm_s"] * 1e3,
                    r["bytes"],
                    r["bandwidth_Bps"] / 1e6,
                    (r["forward_s"] + r["backward_s"]) * 1e3,
                ]
            )
    return Table(
        "layers",
        f"Top {top} layers by communication time, per run",
        ["file", "strategy", "layer", "comm ms/step", "bytes/step", "MB/s", "compute ms/step"],
        rows,
        [f"mean over computing ranks and steps after the first {warmup}; MB/s = bytes / comm time"],
    )


def final_loss(loss: np.ndarray) -> float:
    """Mean training loss over the last 10% of steps (rows a rank never reached are zero and left out)."""
    if not loss.size:
        return float("nan")
    tail = loss[:, -max(1, loss.shape[1] // 10) :]
    return float(np.nanmean(tail[tail != 0]))


def strategy_comparison(runs, warmup: int) -> Table:
    rows = []
    for run in sorted(runs, key=lambda r: (r.config.get("model"), r.world_size, r.strategy)):
        if run.strategy == "fedavg":
            continue
        ranks = compute_ranks(run)
        st, c = step_stats(run, warmup), comm_split(run, warmup)
        stale = run.data.get("ps/updates/staleness")
        blocked = run.data.get("ps/blocked")
        acc = run.data.get("metrics/test_accuracy")
        loss = run.data["metrics/loss"][ranks]
        rows.append(
            [
                run.config.get("model"),
                run.world_size,
                run.strategy,
                st.samples_per_s,
                f"{100 * c.ratio:.1f}%",
                c.wait_s + (float(blocked[ranks].sum(axis=1).mean()) if blocked is not None else 0.0),
                f"{stale.mean():.2f}/{stale.max():.0f}" if stale is not None and stale.size else "-",
                final_loss(loss),
                f"{100 * acc[-1]:.1f}%" if acc is not None and acc.size else "-",
            ]
        )
    return Table(
        "strategies",
        "Strategy comparison (same model and ranks side by side)",
        [
            "model",
            "ranks",
            "strategy",
            "samples/s",
            "comm ratio",
            "time blocked (s)",
            "staleness mean/max",
            "final loss",
            "test accuracy",
        ],
        rows,
        [
            f"after {warmup} warm-up step(s); time blocked = barrier wait + (ps/ssp) reply held back, mean "
            "over computing ranks; final loss = mean training loss over the last 10% of steps"
        ],
    )


def fedavg_table(runs) -> Table:
    rows = []
    for run in runs:
        if run.strategy != "fedavg":
            continue
        cfg, d = run.config, run.data
        rounds = d["timing/step"].shape[1]
        moved = float(d["timing/comm_bytes"].sum()) / max(1, rounds)
        acc = d.get("metrics/test_accuracy")
        rows.append(
            [
                Path(run.path).name,
                run.world_size,
                cfg.get("clients"),
                cfg.get("fraction"),
                rounds,
                moved / 2**20,
                float(np.median(d["timing/step"][0])) * 1e3,
                f"{100 * acc[-1]:.1f}%" if acc is not None and acc.size else "-",
                int(d["fedavg/dropped"][0].sum()),
                int(d["fedavg/late"][0].sum()),
            ]
        )
    return Table(
        "fedavg",
        "FedAvg runs",
        [
            "file",
            "ranks",
            "clients",
            "C",
            "rounds",
            "MiB per round",
            "round ms (median)",
            "test accuracy",
            "dropped",
            "late",
        ],
        rows,
        ["MiB per round: model downloads + uploads on all client ranks"],
    )


def model_table(runs, fit: costmodel.Fit, scale: list[int], warmup: int) -> Table:
    rows = []
    for run in runs:
        if run.strategy not in ("ring", "localsgd", "ps", "ssp"):
            continue
        here = costmodel.predict(run, fit, [run.world_size], warmup)[0]
        measured = step_stats(run, warmup).median_s
        err = (here.step_s - measured) / measured if measured else float("nan")
        preds = costmodel.predict(run, fit, [run.world_size, *scale], warmup)
        rows.append(
            [Path(run.path).name, run.strategy, run.world_size, measured * 1e3, here.step_s * 1e3, f"{100 * err:+.0f}%"]
            + [f"{p.step_s * 1e3:.3g} / {100 * p.ratio:.0f}% / {p.speedup:.3g}" for p in preds[1:]]
        )
    return Table(
        "model",
        "Cost model: measured vs predicted step, and predictions at scale",
        ["file", "strategy", "ranks", "measured ms", "predicted ms", "error"]
        + [f"p={p}: ms / comm / speedup" for p in scale],
        rows,
        [
            f"alpha = {fit.alpha * 1e6:.2f} us, beta = {fit.beta * 1e9:.3f} ns/B "
            f"({fit.bandwidth / 1e9:.3f} GB/s), fit error {100 * fit.error:.1f}%",
            "predicted = measured compute per step + modelled communication (analysis/costmodel.py)",
            "measured runs on an oversubscribed host include waiting for a core, which the model leaves out",
        ],
    )
