"""Numbers derived from one results file, or a group of them. Pure numpy; definitions stated where used.

Warm-up: the first ``warmup`` steps of every run are left out of every statistic (they pay one-time costs:
allocator growth, lazy initialisation, cold caches) and the number left out is printed with each table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from analysis.load import RunResults


def compute_ranks(run: RunResults) -> np.ndarray:
    """Indices of ranks that run training steps (all but parameter servers / aggregators)."""
    roles = run.attrs.get("roles") or ["peer"] * run.world_size
    return np.array([i for i, r in enumerate(roles) if r in ("peer", "worker", "client_host")], dtype=int)


def _measured(run: RunResults, name: str, warmup: int) -> np.ndarray:
    arr = run.data[name][compute_ranks(run)]
    lo = warmup if arr.shape[1] > warmup else 0
    return arr[:, lo:]


@dataclass
class StepStats:
    median_s: float
    p25_s: float
    p75_s: float
    steps: int
    samples_per_s: float


def step_stats(run: RunResults, warmup: int = 1) -> StepStats:
    """Time per step = the slowest computing rank's step time (a synchronous step ends when the last rank
    ends); median and quartiles over steps. Throughput = global batch / median step time; for decoupled runs
    (``ps`` async, ``ssp``: ranks took different numbers of steps) = samples trained / training wall time."""
    per_step = _measured(run, "timing/step", warmup).max(axis=0)
    batch = int(run.attrs.get("per_rank_batch", 0))
    global_batch = batch * int(run.attrs.get("compute_ranks", 0))
    med = float(np.median(per_step))
    p25, p75 = (float(q) for q in np.percentile(per_step, [25, 75]))
    rate = global_batch / med if med > 0 else 0.0
    done = run.data.get("timing/steps_done")
    if done is not None and len(set(done[compute_ranks(run)].tolist())) > 1 and run.attrs.get("train_wall_s"):
        rate = float(done[compute_ranks(run)].sum()) * batch / float(run.attrs["train_wall_s"])
    return StepStats(med, p25, p75, per_step.size, rate)


@dataclass
class CommSplit:
    overall_s: float
    comm_s: float
    compute_s: float
    wait_s: float
    ratio: float  # communication / overall


def comm_split(run: RunResults, warmup: int = 1) -> CommSplit:
    """The columns of PipeTransformer's Table 2 (He et al. 2021): overall cost, communication cost, computation
    cost, communication cost ratio. Each is the mean over computing ranks of the sum over measured steps:
    overall = step time; communication = per-layer communication; computation = forward + backward +
    optimizer (+ injected straggler delay is *not* computation); wait = time blocked on peers outside
    communication. ratio = communication / overall."""
    total = {}
    for name in ("step", "comm", "forward", "backward", "optimizer", "wait"):
        arr = _measured(run, f"timing/{name}", warmup)
        total[name] = float(arr.reshape(arr.shape[0], -1).sum(axis=1).mean())
    compute = total["forward"] + total["backward"] + total["optimizer"]
    overall = total["step"]
    return CommSplit(overall, total["comm"], compute, total["wait"], total["comm"] / overall if overall else 0.0)


def layer_split(run: RunResults, warmup: int = 1) -> list[dict]:
    """Per layer, mean over computing ranks of the per-step mean: forward, backward, communication (s), bytes
    sent per step, and effective bandwidth = bytes / communication time (B/s)."""
    names = run.data["layers/name"]
    fwd = _measured(run, "timing/forward", warmup).mean(axis=(0, 1))
    bwd = _measured(run, "timing/backward", warmup).mean(axis=(0, 1))
    comm = _measured(run, "timing/comm", warmup).mean(axis=(0, 1))
    sent = _measured(run, "timing/comm_bytes", warmup).mean(axis=(0, 1))
    return [
        {
            "layer": str(names[i]),
            "forward_s": fwd[i],
            "backward_s": bwd[i],
            "comm_s": comm[i],
            "bytes": sent[i],
            "bandwidth_Bps": sent[i] / comm[i] if comm[i] > 0 else 0.0,
        }
        for i in range(len(names))
    ]


def oversubscription(attrs: dict) -> tuple[bool, int]:
    """(oversubscribed, ranks on the busiest host) from a results file's root attributes: more busy threads on
    a host than it has cores means times include waiting for a core, and a speedup is bounded by the cores,
    not the ranks."""
    hosts = attrs.get("hosts") or []
    per_host = max((hosts.count(h) for h in set(hosts)), default=1)
    cores = int(attrs.get("cores_per_host", 0) or 0)
    return bool(cores) and per_host * int(attrs.get("threads_per_rank", 1)) > cores, per_host


def oversubscribed(run: RunResults) -> bool:
    return oversubscription(run.attrs)[0]


NOT_WORKLOAD = (
    "out",
    "quiet",
    "steps",
    "eval_every",
    "flush_every",
    "trace",
    "timeout",
    "threads",
    "fail_rank",
    "fail_step",
    "fail_mode",
)
"""Config keys that do not change the work of a step: runs differing only in these (and the rank count) are
compared in one speedup group."""


def speedups(runs: list[RunResults], warmup: int = 1) -> list[dict]:
    """Group runs whose configs agree on everything that shapes a step's work (see NOT_WORKLOAD). Within a
    group, the speedup of p ranks against the smallest rank count p0 present (the earliest such run) is
    S = X(p) / X(p0) with X = samples/s. For strong scaling (fixed global batch) this is T(p0) / T(p); for weak
    scaling (fixed per-rank batch) it is the scaled speedup (p / p0) T(p0) / T(p). Ideal S = p / p0; parallel
    efficiency E = S / (p / p0)."""
    groups: dict[tuple, list[RunResults]] = {}
    for run in runs:
        cfg = run.config
        rest = json.dumps({k: v for k, v in cfg.items() if k not in NOT_WORKLOAD}, sort_keys=True)
        key = (run.strategy, cfg.get("model"), cfg.get("dataset"), cfg.get("scaling", "weak"), rest)
        groups.setdefault(key, []).append(run)
    rows = []
    for key, members in sorted(groups.items()):
        members.sort(key=lambda r: (int(r.attrs.get("compute_ranks", r.world_size)), r.attrs.get("created_utc", "")))
        base = members[0]
        p0 = int(base.attrs.get("compute_ranks", base.world_size))
        x0 = step_stats(base, warmup).samples_per_s
        for run in members:
            st = step_stats(run, warmup)
            p = int(run.attrs.get("compute_ranks", run.world_size))
            s = st.samples_per_s / x0 if x0 > 0 else 0.0
            rows.append(
                {
                    "strategy": key[0],
                    "model": key[1],
                    "dataset": key[2],
                    "scaling": key[3],
                    "ranks": run.world_size,
                    "compute_ranks": p,
                    "step_median_s": st.median_s,
                    "step_p25_s": st.p25_s,
                    "step_p75_s": st.p75_s,
                    "samples_per_s": st.samples_per_s,
                    "speedup": s,
                    "efficiency": s / (p / p0),
                    "baseline_ranks": p0,
                    "oversubscribed": oversubscribed(run),
                    "file": run.path,
                }
            )
    return rows
