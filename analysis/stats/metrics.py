"""Numbers derived from one results file. Each metric is defined once, here; analysis/README.md lists them.

Warm-up: the first ``warmup`` steps (rounds) of every run are left out of every statistic (they pay one-time
costs: allocator growth, lazy initialisation, cold caches) and the number left out is printed with each table.

Three schedules shape what a "step" is (:func:`schedule`): lock-step (``ring``, ``localsgd``, ``ps`` sync: every
computing rank takes every step together), decoupled (``ps`` async, ``ssp``: workers take different numbers of
steps) and rounds (``fedavg``: a row is a round; rank 0 aggregates, client hosts train sampled clients).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from analysis.data.facts import applies, row_unit, schedule
from analysis.data.load import RunResults, recorded_mean, sum_layers
from kernels.topology import COMPUTING_ROLES as TOPOLOGY_COMPUTING

COMPUTING_ROLES = tuple(role.value for role in TOPOLOGY_COMPUTING)
"""Roles whose ranks train (forward, backward, local update); servers and the aggregator do not (one fact, kept
on the Topology)."""

FEDERATED_LABEL_OPTIONS = (
    ("fl_algorithm", "fedavg"),
    ("aggregator", "mean"),
    ("byzantine", ""),
    ("selection", "uniform"),
)
"""fedavg options that change what a run computes (not the defaults): they name the run in tables."""


LABELLED_DEFAULTS = (
    ("overlap", False),
    ("ps_mode", "sync"),
    ("compress", "none"),
    ("accumulate_steps", 1),
    ("allreduce", "flat"),
    ("emulate_link", ""),
    ("freeze", ""),
    ("freeze_cache", False),
    *FEDERATED_LABEL_OPTIONS,
)
"""Options that name a run in tables where they apply and differ from their default (ps's async and ssp modes are
other schedules; an accumulated step is N micro-batches; a hierarchical all-reduce is another communication; a
run over an emulated link says so in every table and legend; a run that freezes layers trains and sends less)."""
LABELLED_OPTIONS = tuple(key for key, _ in LABELLED_DEFAULTS)
"""Options :func:`strategy_label` already names (a legend that lists the swept options leaves them out)."""


def strategy_label(run: RunResults) -> str:
    """The strategy as tables name it: ``ring --overlap`` apart from ``ring`` (same strategy, other schedule),
    ``ring --compress topk:0.01`` apart from both, ``ring --accumulate-steps 4`` (a step is 4 micro-batches), and
    ``fedavg --fl-algorithm scaffold`` or ``fedavg --aggregator krum:2 --byzantine 0.2:sign-flip`` apart from plain
    fedavg: each option of :data:`LABELLED_DEFAULTS` that applies to the strategy and is not its default."""
    label = run.strategy
    for key, default in LABELLED_DEFAULTS:
        value = run.config.get(key)  # absent (older files) reads as the default: not named
        if value in (default, None) or not applies(run, key):
            continue
        label += f" --{key.replace('_', '-')}" + ("" if value is True else f" {value}")
    return label


def computing_ranks(roles: list[str] | None, world_size: int) -> np.ndarray:
    """Indices of ranks that train (see COMPUTING_ROLES); every rank when the file names no roles."""
    roles = roles or ["peer"] * world_size
    return np.array([i for i, r in enumerate(roles) if r in COMPUTING_ROLES], dtype=int)


def compute_ranks(run: RunResults) -> np.ndarray:
    return computing_ranks(run.attrs.get("roles"), run.world_size)


def _after_warmup(arr: np.ndarray, warmup: int) -> np.ndarray:
    lo = warmup if arr.shape[1] > warmup else 0
    return arr[:, lo:]


def per_row(data: Mapping, name: str) -> np.ndarray:
    """(ranks, rows) float64: series ``name`` summed over its layers. A lazily loaded file reduces it a block of
    rows at a time (:meth:`analysis.data.load.LazyDatasets.summed`), so a per-layer series is never read whole."""
    summed = getattr(data, "summed", None)
    if summed is not None:
        return summed(name)
    return sum_layers(data[name])


def per_layer_mean(data: Mapping, name: str, ranks: np.ndarray, warmup: int) -> np.ndarray:
    """(layers,): mean of a per-layer series over ``ranks`` and rows ``>= warmup`` (blockwise when lazy)."""
    means = getattr(data, "layer_means", None)  # pragma: no mutate (blockwise or whole: the same mean)
    if means is not None:
        return means(name, ranks, warmup)
    values = np.asarray(data[name], dtype=np.float64)  # pragma: no mutate (the mean of ints is float too)
    return recorded_mean(_after_warmup(values[ranks], warmup), axis=(0, 1))


def _measured(run: RunResults, name: str, warmup: int) -> np.ndarray:
    return _after_warmup(run.data[name][compute_ranks(run)], warmup)


def _aggregator(run: RunResults) -> int:
    return (run.attrs.get("roles") or []).index("aggregator")


def row_times(run: RunResults, warmup: int = 1) -> np.ndarray:
    """Seconds of each measured step (round). One definition for every table and figure: a lock-step step
    ends when its slowest computing rank ends, so it is the maximum over computing ranks; a round is the
    aggregator's time from sampling to the last update folded (it spans every host's part of the round);
    decoupled runs have no common step, and this is the slowest worker's time at each step index."""
    if schedule(run) == "rounds":
        return _after_warmup(run.data["timing/step"][[_aggregator(run)]], warmup)[0]
    return _measured(run, "timing/step", warmup).max(axis=0)


def fedavg_samples_per_round(run: RunResults) -> np.ndarray:
    """Samples trained in each round, from the per-client rows: a client that trained (status ok or late)
    went E times over its n_k samples in batches of b = min(B, n_k), dropping a last partial batch, so it
    trained E * b * floor(n_k / b) samples; with ``--local-steps T`` it took T batches of b, cycling its data:
    T * b (``bench/strategies/fedavg/local.py``). Dropped clients trained nothing."""
    d, cfg = run.data, run.config
    rounds = run.data["timing/step"].shape[1]
    status = d["fedavg/clients/status"].astype(int)  # pragma: no mutate (0 and 2 compare alike as floats)
    n = d["fedavg/clients/samples"].astype(np.int64)  # pragma: no mutate (n // b of whole floats is whole too)
    trained = (status == 0) | (status == 2)
    b = np.maximum(1, np.minimum(int(cfg.get("batch_size", 1)), n))
    steps = int(cfg.get("local_steps") or 0)
    batches = steps if steps > 0 else int(cfg.get("local_epochs", 1)) * (n // b)
    per_client = b * batches * trained
    r = d["fedavg/clients/round"].astype(int) - 1  # round numbers count from 1, rows from 0
    return np.bincount(r, weights=per_client, minlength=rounds)[:rounds]  # rounds past the file's last: cut


def samples_per_row(run: RunResults) -> np.ndarray:
    """Samples trained in each step (round) by all computing ranks together, unwarmed (every row)."""
    rows = run.data["timing/step"].shape[1]
    if schedule(run) == "rounds":
        return fedavg_samples_per_round(run)
    batch = int(run.attrs.get("per_rank_batch", 0))
    if schedule(run) == "decoupled":
        done = run.data["timing/steps_done"][compute_ranks(run)]
        return np.array([batch * int((done > s).sum()) for s in range(rows)], dtype=np.float64)
    return np.full(rows, float(batch * len(compute_ranks(run))))


@dataclass
class StepStats:
    median_s: float
    p25_s: float
    p75_s: float
    steps: int
    samples_per_s: float
    unit: str = "step"


def step_stats(run: RunResults, warmup: int = 1) -> StepStats:
    """Median and quartiles of :func:`row_times`, and throughput = samples trained per second in the measured
    rows (after ``warmup``), one definition for every printout (analysis/README.md, "Throughput"): lock-step,
    global batch (per-rank batch x computing ranks) x measured steps / their summed time (the slowest computing
    rank's step: every step counts, so localsgd's averaging steps and any slow step are in it, as they are in the
    run's time; a median step would leave them out); decoupled, samples all workers trained / training wall time
    (``train_wall_s``: the workers' steps overlap, so their step times do not add up); rounds, samples the
    round's clients trained / round time, summed over measured rounds."""
    per_step = row_times(run, warmup)
    med = float(np.median(per_step)) if per_step.size else 0.0
    p25, p75 = (float(q) for q in np.percentile(per_step, [25, 75])) if per_step.size else (0.0, 0.0)
    kind = schedule(run)
    if kind == "decoupled" and run.attrs.get("train_wall_s"):
        rate = float(samples_per_row(run).sum()) / float(run.attrs["train_wall_s"])
    elif kind == "rounds":
        samples = _after_warmup(samples_per_row(run)[None, :], warmup)[0]
        rate = float(samples.sum() / per_step.sum()) if per_step.sum() > 0 else 0.0
    else:
        global_batch = int(run.attrs.get("per_rank_batch", 0)) * len(compute_ranks(run))
        total = float(per_step.sum())
        rate = global_batch * per_step.size / total if total > 0 else 0.0
    return StepStats(med, p25, p75, per_step.size, rate, row_unit(run))


PHASES = ("forward", "backward", "comm", "pack", "compress", "wait", "optimizer", "data", "injected")


def phase_totals(data: Mapping, ranks: np.ndarray, warmup: int = 1) -> dict[str, float]:
    """Seconds per phase, mean over ``ranks`` of the sum over rows ``>= warmup``, plus ``step`` (the whole
    step), ``exposed`` (communication the training thread waited for: ``timing/exposed`` in an overlapped run,
    all of ``comm`` otherwise) and ``other`` (step time no phase claims: loss, zero_grad, Python; in an overlapped
    run also the packing the training thread waited for). Overlapped communication ran during the backward pass,
    so it is not subtracted from the step again. Used by the report and by the summary a run prints, so both say
    the same thing. ``pack`` (copying to and from host buffers) is absent from files written before it was its
    own phase; it is then inside ``comm``."""
    out = {}
    for name in ("step", *PHASES, "exposed"):
        key = f"timing/{name}"
        if key not in data:
            out[name] = out["comm"] if name == "exposed" else 0.0
            continue
        arr = _after_warmup(per_row(data, key)[ranks], warmup)
        if not arr.size:  # pragma: no mutate (no rows: refused earlier)
            out[name] = 0.0
            continue
        out[name] = float(recorded_mean(arr, axis=0).sum())  # per row over ranks, summed: ranks absent in a row skipped
    on_the_thread = sum(out[p] for p in PHASES) - out["comm"] + out["exposed"]
    if "timing/exposed" in data:
        on_the_thread -= out["pack"]  # packed on the communication thread
    out["other"] = max(0.0, out["step"] - on_the_thread)
    return out


@dataclass
class CommSplit:
    overall_s: float
    comm_s: float
    compute_s: float
    wait_s: float
    pack_s: float
    share: float  # communication share of step time: communication / overall

    @property
    def ratio(self) -> float:  # the name older callers used
        return self.share


def comm_split(run: RunResults, warmup: int = 1) -> CommSplit:
    """The columns of PipeTransformer's Table 2 (He et al. 2021): overall cost, communication cost, computation
    cost and the communication share of overall cost, each the mean over computing ranks of the sum over
    measured steps. Computation = forward + backward + optimizer; a straggler's injected delay is not
    computation; wait = time blocked on peers outside communication; packing (copies to host buffers) is its
    own column, not communication."""
    t = phase_totals(run.data, compute_ranks(run), warmup)
    compute = t["forward"] + t["backward"] + t["optimizer"]
    share = t["comm"] / t["step"] if t["step"] else 0.0
    return CommSplit(t["step"], t["comm"], compute, t["wait"], t["pack"], share)


@dataclass
class OverlapSplit:
    """A cluster profiler's step breakdown (computing, exposed and overlapped communication, free time, as
    PyTorch's profiler and Nsight Systems split a step), seconds per computing rank."""

    computing_s: float  # forward + backward + optimizer
    exposed_s: float  # communication not overlapped: the training thread waited for it
    overlapped_s: float  # communication that ran while the training thread computed
    free_s: float  # the rest of the step: data, packing, waiting on peers, Python
    step_s: float

    @property
    def overlap_percent(self) -> float:
        """Holistic Trace Analysis's ``get_comm_comp_overlap``: overlapped / all communication (nan: none)."""
        comm = self.exposed_s + self.overlapped_s
        return 100.0 * self.overlapped_s / comm if comm > 0 else math.nan


def overlap_split(run: RunResults, warmup: int = 1) -> OverlapSplit:
    """Mean over computing ranks of the sums over measured steps. computing + exposed + free = step; overlapped
    communication is hidden behind computing. A run without ``--overlap`` has everything exposed."""
    t = phase_totals(run.data, compute_ranks(run), warmup)
    computing = t["forward"] + t["backward"] + t["optimizer"]
    free = max(0.0, t["step"] - computing - t["exposed"])
    return OverlapSplit(computing, t["exposed"], t["comm"] - t["exposed"], free, t["step"])


def comm_to_compute(totals: dict[str, float]) -> float:
    """Communication-to-computation ratio: communication time / (forward + backward) time. Not the
    communication share of step time (:class:`CommSplit`), which divides by the whole step."""
    compute = totals["forward"] + totals["backward"]
    return totals["comm"] / compute if compute > 0 else 0.0


def layer_split(run: RunResults, warmup: int = 1) -> list[dict]:
    """Per layer, mean over computing ranks of the per-step mean: forward, backward, communication (s), bytes
    moved per step, and effective bandwidth = bytes / communication time (B/s)."""
    names = run.data["layers/name"]
    ranks = compute_ranks(run)
    mean = {k: per_layer_mean(run.data, f"timing/{k}", ranks, warmup) for k in ("forward", "backward", "comm")}
    sent = per_layer_mean(run.data, "timing/comm_bytes", ranks, warmup)
    return [
        {
            "layer": str(names[i]),
            "forward_s": float(mean["forward"][i]),
            "backward_s": float(mean["backward"][i]),
            "comm_s": float(mean["comm"][i]),
            "bytes": float(sent[i]),
            "bandwidth_Bps": float(sent[i] / mean["comm"][i]) if mean["comm"][i] > 0 else 0.0,
        }
        for i in range(len(names))
    ]


def bytes_per_row(run: RunResults) -> np.ndarray:
    """Bytes moved by all ranks in each step (round), unwarmed."""
    return per_row(run.data, "timing/comm_bytes").sum(axis=0)


def across_share(run: RunResults, warmup: int = 1) -> float:
    """Share of the bytes all ranks sent that went to ranks of other nodes (``timing/comm_bytes_across`` over
    ``timing/comm_bytes``, rows after the warm-up); NaN where the file has no count (before it, or ddp)."""
    if "timing/comm_bytes_across" not in run.data:
        return math.nan
    sent = _after_warmup(per_row(run.data, "timing/comm_bytes"), warmup).sum()
    across = _after_warmup(per_row(run.data, "timing/comm_bytes_across"), warmup).sum()
    return float(across / sent) if sent else math.nan


def across_time_share(run: RunResults, warmup: int = 1) -> float:
    """Share of the time spent communicating or waiting on peers (``timing/comm`` + ``timing/wait``) that went on
    calls exchanging with other nodes (``timing/comm_across``), rows after the warm-up, over the ranks that recorded
    communication time (a parameter server's or FedAvg aggregator's sends are not in its ``timing/comm``). Waiting
    is in the denominator because the calls timed include blocking receives that a step records as waiting (a ps
    worker's replies, a FedAvg tree's children's reports). NaN where the file has no such series (before it, or
    ddp)."""
    if "timing/comm_across" not in run.data:
        return math.nan
    comm = _after_warmup(per_row(run.data, "timing/comm"), warmup)
    busy = comm + _after_warmup(run.data["timing/wait"], warmup) if "timing/wait" in run.data else comm
    across = _after_warmup(per_row(run.data, "timing/comm_across"), warmup)
    ranks = comm.sum(axis=1) > 0
    total = busy[ranks].sum()
    return float(across[ranks].sum() / total) if total else math.nan


def oversubscription(attrs: dict) -> tuple[bool, int]:
    """(oversubscribed, ranks on the busiest host) from a results file's root attributes: more busy threads on
    a host (ranks x threads per rank) than it has cores means times include waiting for a core, and a
    speedup is bounded by the cores, not the ranks."""
    hosts = attrs.get("hosts") or []
    per_host = max((hosts.count(h) for h in set(hosts)), default=1)
    cores = int(attrs.get("cores_per_host", 0) or 0)  # pragma: no mutate (None or 0: unknown either way)
    return bool(cores) and per_host * int(attrs.get("threads_per_rank", 1)) > cores, per_host


def oversubscribed(run: RunResults) -> bool:
    return oversubscription(run.attrs)[0]
