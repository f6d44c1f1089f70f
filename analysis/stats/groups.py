"""Which runs belong together: repeats (same experiment, same ranks, any seed) pool into one row with mean +- 95 %
CI; scaling groups (same work per step, any ranks, any length) give speedup and efficiency.

The seed is not part of the experiment: runs that differ only by seed (and by options that change nothing
measured, NOT_REPEAT) are repeats of one experiment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from analysis.data.load import RunResults
from analysis.stats.intervals import Estimate, estimate
from analysis.stats.metrics import compute_ranks, oversubscribed, step_stats, strategy_label

NOT_REPEAT = (
    "out",
    "seed",
    "quiet",
    "flush_every",
    "trace",
    "timeout",
    "threads",  # the option; the threads each rank ran are in the environment (below), which groups keep apart
    "stop_file",
    "checkpoint_every",
    "resume",
    "client_timeout",
    "on_client_timeout",
    "fail_rank",
    "fail_step",
    "fail_mode",
)
"""Config keys that change nothing a run measures: runs differing only in these are repeats of one experiment."""

NOT_WORKLOAD = (*NOT_REPEAT, "eval_every")
"""Config keys that do not change what a step's time measures: runs differing only in these (and the rank count)
are scaled versions of one experiment. The run length stays in: a different step count changes the share of
early, slower steps in the measured rows, so such runs are not compared."""

EFFICIENCY_LIMIT = 1.05
"""Efficiency above this is flagged: superlinear scaling is possible (caches), but far more often the baseline was
measured under other conditions."""


def environment(run: RunResults) -> dict:
    """What a run measured under, beside its config: torch threads per rank and whether the host was
    oversubscribed (more busy threads than cores). Runs that differ here are neither repeats nor a scaling
    group: their times are not comparable (a 1-rank baseline with 2 threads against 2 ranks of 1 thread each gave
    a speedup of 45 at 2 ranks)."""
    return {"threads_per_rank": int(run.attrs.get("threads_per_rank", 1)), "oversubscribed": oversubscribed(run)}


def workload(run: RunResults) -> dict:
    """The config items that shape a step's work (everything but NOT_WORKLOAD)."""
    return {k: v for k, v in in_effect(run.config).items() if k not in NOT_WORKLOAD}


def workload_key(run: RunResults) -> str:
    return json.dumps([workload(run), environment(run)], sort_keys=True)


SUB_OPTIONS = {
    "freeze_every": "freeze",
    "freeze_unit": "freeze",
    "freeze_cache": "freeze",
    "freeze_cache_mb": "freeze_cache",
}
"""Options that mean nothing while the option they refine is off (empty or false). bench refuses them set without
it (bench/config.py, check_freeze), so a run without it holds their defaults: no value of the experiment, and left
out of it (a run without --freeze is not "every 50 steps")."""


def in_effect(config: dict) -> dict:
    """``config`` without the SUB_OPTIONS whose option is off."""
    return {k: v for k, v in config.items() if k not in SUB_OPTIONS or config.get(SUB_OPTIONS[k])}


def experiment(run: RunResults) -> dict:
    """What repeats share: every config item in effect but NOT_REPEAT (the run length and evaluation points too, so
    that pooled accuracies are taken at the same steps)."""
    return {k: v for k, v in in_effect(run.config).items() if k not in NOT_REPEAT}


def experiment_key(run: RunResults) -> str:
    return json.dumps([experiment(run), environment(run)], sort_keys=True)


def computing(run: RunResults) -> int:
    return len(compute_ranks(run))


@dataclass
class Group:
    """Repeats of one experiment at one rank count."""

    runs: list[RunResults]

    @property
    def first(self) -> RunResults:
        return self.runs[0]

    @property
    def n(self) -> int:
        return len(self.runs)

    def pooled(self, metric) -> Estimate:
        """``metric(run)`` over the repeats as mean +- CI (NaN results, e.g. "not reached", left out of n)."""
        return estimate(metric(r) for r in self.runs)

    @property
    def oversubscribed(self) -> bool:
        return any(oversubscribed(r) for r in self.runs)

    @property
    def label(self) -> str:
        return self.first.name if self.n == 1 else f"{self.first.name} (+{self.n - 1} repeats)"


def repeat_groups(runs: list[RunResults]) -> list[Group]:
    """Runs pooled by (experiment, world size), in a stable order: strategy, model, dataset, ranks, file."""
    groups: dict[tuple, list[RunResults]] = {}
    for run in sorted(runs, key=lambda r: (r.strategy, str(r.config.get("model")), r.world_size, r.path)):
        groups.setdefault((experiment_key(run), run.world_size), []).append(run)
    return [Group(members) for members in groups.values()]


def speedups(runs: list[RunResults], warmup: int = 1) -> list[dict]:
    """Within a scaling group (same workload, any ranks), the speedup of p computing ranks against the fewest
    present, p0: S = X(p) / X(p0) with X = samples/s (mean over repeats at p0; each run at p gives one S, pooled
    as mean +- CI). For strong scaling (fixed global batch) this is T(p0) / T(p); for weak scaling (fixed
    per-rank batch) the scaled speedup (p / p0) T(p0) / T(p). Ideal S = p / p0 and efficiency E = S / (p / p0),
    both in computing ranks (servers and the aggregator train nothing). A group with one rank count has no
    speedup (None)."""
    scaling: dict[str, list[Group]] = {}
    for group in repeat_groups(runs):
        scaling.setdefault(workload_key(group.first), []).append(group)
    rows = []
    for members in scaling.values():
        members.sort(key=lambda g: computing(g.first))
        base = members[0]
        p0 = computing(base.first)
        x0 = base.pooled(lambda r: step_stats(r, warmup).samples_per_s).mean
        several = len({computing(g.first) for g in members}) > 1
        for group in members:
            p = computing(group.first)
            speed = group.pooled(lambda r, x0=x0: step_stats(r, warmup).samples_per_s / x0) if several and x0 else None
            eff = Estimate(speed.mean / (p / p0), speed.half / (p / p0), speed.n) if speed else None
            rows.append(_speedup_row(group, warmup, p, p0, speed, eff))
    return rows


def kept_apart(runs: list[RunResults]) -> list[str]:
    """Why runs of one workload were not pooled or compared: the environments their times came from differ."""
    by_workload: dict[str, dict[str, list[str]]] = {}
    for run in runs:
        env = environment(run)
        by_workload.setdefault(json.dumps(workload(run), sort_keys=True), {}).setdefault(
            json.dumps(env, sort_keys=True), []
        ).append(run.name)
    notes = []
    for envs in by_workload.values():
        if len(envs) > 1:
            parts = "; ".join(f"{_describe(json.loads(e))}: {', '.join(sorted(names))}" for e, names in envs.items())
            notes.append(f"not compared (measured under different conditions): {parts}")
    return notes


def _describe(env: dict) -> str:
    over = "oversubscribed" if env["oversubscribed"] else "not oversubscribed"
    return f"{env['threads_per_rank']} thread(s) per rank, {over}"


def implausible(eff) -> bool:
    """An efficiency above EFFICIENCY_LIMIT (or not finite): marked in the table and the figure."""
    return eff is not None and not (eff.mean <= EFFICIENCY_LIMIT)


def _speedup_row(group: Group, warmup: int, p: int, p0: int, speed, eff) -> dict:
    run = group.first
    return {
        "strategy": strategy_label(run),
        "model": run.config.get("model"),
        "dataset": run.config.get("dataset"),
        "scaling": run.config.get("scaling", "weak"),
        "ranks": run.world_size,
        "compute_ranks": p,
        "baseline_ranks": p0,
        "n": group.n,
        "step_median_s": group.pooled(lambda r: step_stats(r, warmup).median_s),
        "samples_per_s": group.pooled(lambda r: step_stats(r, warmup).samples_per_s),
        "speedup": speed,
        "efficiency": eff,
        "oversubscribed": group.oversubscribed,
        "unit": step_stats(run, warmup).unit,
        "file": group.label,
        "group": workload_key(run),
    }
