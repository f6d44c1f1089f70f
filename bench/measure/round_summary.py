"""The summary rank 0 prints after a FedAvg run: rounds, accuracy, where round time went, clients, memory. Beside
:mod:`bench.measure.summary` (the lock-step and decoupled one), reading the numbers from the results file just
written, as the report reads them."""

from __future__ import annotations

from analysis.data.load import load, recorded_mean
from analysis.stats.metrics import oversubscription, per_row, step_stats
from analysis.views.fedlama import averaged_share
from analysis.views.fl import aggregator_share


def _per_host(data, name: str) -> float:
    """Mean over client hosts (ranks >= 1) of the series summed over rounds (and layers): per round over the hosts
    that recorded it (a run resumed on another rank count lacks some hosts in some rounds), summed."""
    arr = per_row(data, name)[1:]
    return float(recorded_mean(arr, axis=0).sum()) if arr.size else 0.0


def round_split(data) -> dict:
    """Seconds summed over rounds. Client hosts (ranks >= 1), mean over hosts: compute = forward + backward,
    communication = model download + upload, injected = simulated device slowness. Aggregator (rank 0): send,
    receive, aggregate, idle (waiting for any client's message), select (power-of-choice's loss round trip)."""
    out = {
        "round": float(data["timing/step"][0].sum()),
        "compute": _per_host(data, "timing/forward") + _per_host(data, "timing/backward"),
        "communication": _per_host(data, "timing/comm"),
        "upload": _per_host(data, "fedavg/upload"),
        "download": _per_host(data, "fedavg/download"),
        "waiting": _per_host(data, "timing/wait"),
        "injected": _per_host(data, "timing/injected"),
    }
    for name in ("send", "receive", "aggregate", "idle", "select"):  # select: power-of-choice (absent before it)
        series = data.get(f"fedavg/aggregator_{name}")
        out[f"aggregator_{name}"] = float(series[0].sum()) if series is not None else 0.0
    return out


def print_round_summary(loop, wall: float, status: str, placement: str) -> None:
    """Rank 0's summary of a FedAvg run, from the results file just written (the report's definitions).
    ``placement``: the placement line (:func:`bench.strategies.fedavg.needs.placement_line`)."""
    cfg = loop.cfg
    written = load(loop.run.out)
    data = written.data
    print(_heading(loop, data["timing/step"].shape[1], status))
    if "fedlama/averaged" in data:
        print(f"  FedLAMA         {100 * averaged_share(data):.1f}% of the model averaged per round (FedAvg: 100%)")
    measured = step_stats(written, warmup=1)  # the report's definitions (analysis/README.md)
    print(
        f"  round time      median {1e3 * measured.median_s:.1f} ms (rounds after the first), {wall:.2f} s of "
        "training in all"
    )
    print(f"  throughput      {measured.samples_per_s:.1f} samples/s  (samples the clients trained / round time)")
    _print_time_split(round_split(data), written)
    print(f"  aggregation     {_aggregation(cfg, loop.run.layers)}")
    print(f"  placement       {placement}")
    counts = {k: int(data[f"fedavg/{k}"][0].sum()) for k in ("sampled", "finished", "dropped", "late")}
    print(
        f"  clients         sampled {counts['sampled']}, finished {counts['finished']}, dropped {counts['dropped']}, "
        f"late {counts['late']}"
    )
    check = written.attrs.get("byzantine_check")
    if check:
        print(byzantine_line(cfg, check))
    if loop.evals:
        r, acc, loss = loop.evals[-1]
        print(f"  test accuracy   {100 * acc:10.2f} %  (loss {loss:.4f}, after round {int(r) + 1})")
    import resource

    print(f"  rank 0 peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    over, per_host = oversubscription(loop.attrs)
    if over:
        print(f"  note            {per_host} ranks share {loop.attrs.get('cores_per_host', 0)} cores: oversubscribed")
    print(f"  results         {loop.run.out}")


def _heading(loop, rounds: int, status: str) -> str:
    """The run in one line: workload, ranks, clients and the options that change what a round computes."""
    cfg = loop.cfg
    local = f"T={cfg.local_steps}" if cfg.local_steps else f"E={cfg.local_epochs}"
    variant = "".join(
        f", {label} {value}"
        for label, value, default in (
            ("algorithm", cfg.fl_algorithm, "fedavg"),
            ("aggregator", cfg.aggregator, "mean"),
            ("byzantine", cfg.byzantine, ""),
            ("selection", cfg.selection, "uniform"),
        )
        if value != default
    )
    return (
        f"syncbench fedavg: {cfg.model} on {cfg.dataset}, {loop.comm.size} ranks, {cfg.clients} clients "
        f"(C={cfg.fraction:g}, {local}, B={cfg.batch_size}{variant}), {rounds} rounds "
        f"({status}{', ' + loop.stopped_by if loop.stopped_by else ''})"
    )


def _print_time_split(split: dict, written) -> None:
    """The aggregator's round as shares of its time (the FedAvg table's definition, rounds after the first);
    the client hosts' phases in seconds."""

    def share(name: str) -> float:
        return 100 * aggregator_share(written, name, warmup=1)

    print(
        f"  aggregator      send {share('send'):.1f}%  receive {share('receive'):.1f}%  "
        f"aggregate {share('aggregate'):.1f}%  "
        + (f"select {share('select'):.1f}%  " if split["aggregator_select"] else "")
        + f"idle (clients training) {share('idle'):.1f}%  of round time (rounds after the first)"
    )
    print(
        f"  client hosts    compute {split['compute']:.2f} s  upload {split['upload']:.2f} s  "
        f"download {split['download']:.2f} s  waiting for the model {split['waiting']:.2f} s  "
        f"injected {split['injected']:.2f} s  (mean per host rank, all rounds)"
    )


def _aggregation(cfg, layers) -> str:
    buffers = cfg.upload_buffers * sum(layer.bytes for layer in layers) / 2**20
    return {
        "client": f"per client at rank 0 ({cfg.upload_buffers} upload buffers per host, {buffers:.2f} MiB)",
        "host": "one partial sum per client rank (--aggregation host)",
        "tree": "partial sums combined pairwise by the client ranks, one to rank 0 (--aggregation tree)",
    }[cfg.aggregation]


def byzantine_line(cfg, check: dict) -> str:
    """How many sampled clients attacked against what the aggregation rule tolerates; a warning where they
    outnumber it (a warning, not an error: a study may be about exactly that)."""
    line = (
        f"  attackers       up to {check['attackers_max']} per round (--byzantine {cfg.byzantine}); "
        f"--aggregator {cfg.aggregator} tolerates {check['tolerated_min']}"
    )
    if check["rounds_exceeded"]:
        line += (
            f"\n  WARNING         the attackers outnumber what --aggregator {cfg.aggregator} tolerates in "
            f"{check['rounds_exceeded']} of {check['rounds']} rounds: its robustness guarantee does not hold there"
        )
    return line
