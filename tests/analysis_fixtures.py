"""Hand-made results files whose numbers are known, in every shape analysis must handle: peers, servers and
workers, an aggregator with client hosts and per-client rows, unequal per-rank times, decoupled runs, threads per
rank. Written with the suite's own writer (``bench.measure.results.write``), so they are real files of the current
schema; the arrays given here are as the bench keeps them (rows and evaluation steps indexed from 0), and the writer
stores step and round numbers from 1."""

from __future__ import annotations

import numpy as np

from analysis.data import schema
from analysis.data.load import load
from bench.measure import results

BASE_CONFIG = {"model": "mlp", "dataset": "digits", "scaling": "weak", "lr": 0.1, "seed": 0, "steps": 5}


def write_run(
    path,
    roles: list[str],
    step_s,
    strategy: str = "ring",
    steps: int = 5,
    layers: int = 2,
    batch: int = 10,
    comm_s=0.0,
    fwd_s=0.0,
    bwd_s=0.0,
    opt_s=0.0,
    wait_s=0.0,
    pack_s=0.0,
    cfg: dict | None = None,
    threads: int = 1,
    cores: int = 64,
    extra: dict | None = None,
    attrs: dict | None = None,
):
    """A run whose rank r takes ``step_s[r]`` per step (a scalar: every rank); per-layer phases split evenly over
    layers. Step 0 of every rank is 100 s (warm-up that statistics must leave out)."""
    ranks = len(roles)
    per_rank = np.broadcast_to(np.asarray(step_s, dtype=np.float64), (ranks,))
    shape = (ranks, steps, layers)

    def per_layer(total):
        return np.broadcast_to(np.asarray(total, dtype=np.float64)[..., None, None] / layers, shape).copy()

    step = np.repeat(per_rank[:, None], steps, axis=1)
    step[:, 0] = 100.0
    data = {
        "timing/step": (step, "s"),
        "timing/wait": (np.full((ranks, steps), wait_s), "s"),
        "timing/optimizer": (np.full((ranks, steps), opt_s), "s"),
        "timing/data": (np.zeros((ranks, steps)), "s"),
        "timing/injected": (np.zeros((ranks, steps)), "s"),
        "timing/forward": (per_layer(fwd_s), "s"),
        "timing/backward": (per_layer(bwd_s), "s"),
        "timing/comm": (per_layer(comm_s), "s"),
        "timing/pack": (per_layer(pack_s), "s"),
        "timing/comm_bytes": (np.full(shape, 1000, dtype=np.int64), "bytes"),
        "metrics/loss": (np.ones((ranks, steps)), "1"),
        "layers/name": (np.array([f"l{i}" for i in range(layers)]), "1"),
        "layers/bytes": (np.full(layers, 4000, dtype=np.int64), "bytes"),
        "timing/steps_done": (np.full(ranks, steps, dtype=np.int64), "steps"),
    }
    data |= extra or {}
    computing = sum(r in ("peer", "worker", "client_host") for r in roles)
    config = BASE_CONFIG | {"out": str(path), "steps": steps} | (cfg or {})
    root = {
        "strategy": strategy,
        "config": config,
        "world_size": ranks,
        "roles": roles,
        "per_rank_batch": batch,
        "compute_ranks": computing,
        "hosts": ["h"] * ranks,
        "cores_per_host": cores,
        "threads_per_rank": threads,
        "created_utc": "2026-11-21T00:00:00",
    } | (attrs or {})
    results.write(str(path), root, data, row_unit="round" if strategy == "fedavg" else "step")
    return load(path)


def ring_run(path, ranks: int, step_s, **kw):
    return write_run(path, ["peer"] * ranks, step_s, **kw)


def ps_run(path, servers: int, workers: int, step_s, **kw):
    roles = ["server"] * servers + ["worker"] * workers
    cfg = {"servers": servers, "ps_mode": "sync"} | kw.pop("cfg", {})
    return write_run(path, roles, step_s, strategy="ps", cfg=cfg, **kw)


def fedavg_run(path, hosts: int, rounds: int, clients: list[tuple], round_s, cfg: dict, **kw):
    """``clients``: rows (round, client, samples, status). Rank 0 (aggregator) takes ``round_s[0]`` per round."""
    rows = np.array(clients, dtype=np.float64).reshape(-1, 4)
    extra = {f"fedavg/clients/{k}": (rows[:, i], "1") for i, k in enumerate(("round", "client", "samples", "status"))}
    counts = np.zeros((hosts + 1, rounds), dtype=np.int64)
    extra |= {f"fedavg/{k}": (counts, "clients") for k in ("sampled", "finished", "dropped", "late")}
    for name in ("send", "receive", "aggregate", "idle"):
        extra[f"fedavg/aggregator_{name}"] = (np.zeros((hosts + 1, rounds)), "s")
    extra |= kw.pop("extra", None) or {}  # more datasets: per-client columns aligned with ``clients``
    roles = ["aggregator"] + ["client_host"] * hosts
    return write_run(path, roles, round_s, strategy="fedavg", steps=rounds, cfg=cfg, extra=extra, **kw)


def with_evals(run_path, steps, accuracy):
    """Add an evaluation series to a written file and reload it. ``steps``: 0-based indices of the steps the
    evaluations followed, as the bench keeps them (the file stores numbers from 1: ``schema.to_file``)."""
    import h5py

    with h5py.File(run_path, "a") as f:
        name, numbers = schema.to_file("metrics/eval_step", np.asarray(steps, dtype=np.int64))
        f.create_dataset(name, data=numbers).attrs["units"] = "step"
        f.create_dataset("metrics/test_accuracy", data=np.asarray(accuracy, dtype=np.float64)).attrs["units"] = "1"
    return load(run_path)


def compressed_pair(folder, method: str = "topk:0.01"):
    """A dense ring run and a compressed one of the same workload, 2 ranks, 5 steps of 0.1 s, 2 layers: per rank,
    step and layer 1000 B sent for 4000 B dense, 0.01 s compressing, residual norm 3 (files d.h5 and t.h5)."""
    shape = (2, 5, 2)
    extra = {
        "compress/dense_bytes": (np.full(shape, 4000, dtype=np.int64), "bytes"),
        "compress/sent_bytes": (np.full(shape, 1000, dtype=np.int64), "bytes"),
        "timing/compress": (np.full(shape, 0.01), "s"),
        "compress/residual_norm": (np.full((2, 5), 3.0), "1"),
    }
    info = {"strategy_info": {"compress": method, "error_feedback": True}}
    dense = write_run(folder / "d.h5", ["peer"] * 2, 0.1)
    return dense, write_run(folder / "t.h5", ["peer"] * 2, 0.1, cfg={"compress": method}, extra=extra, attrs=info)
