"""The links table: how much of what a run sent crossed a node boundary, for runs on several nodes (real ones, or
the virtual nodes of ``--ranks-per-node``), beside the communication share of the step; runs over an emulated
link (``--emulate-link``) are named so (:func:`analysis.stats.metrics.strategy_label`)."""

from __future__ import annotations

import numpy as np

from analysis.models.two_level import fit_links, predictions, step_comm_seconds
from analysis.stats.groups import repeat_groups
from analysis.stats.metrics import (
    across_share,
    across_time_share,
    bytes_per_row,
    comm_split,
    compute_ranks,
    per_row,
    step_stats,
    strategy_label,
)
from analysis.views.core import OVER_NOTE, _notes
from analysis.views.tables import EST, FLAG, INT, NUM, Column, Table


def node_count(run) -> int:
    """Nodes the run's ranks were on (the root attribute ``nodes``; one for files written before it)."""
    return len(set(run.attrs.get("nodes") or [0]))


def spans_nodes(run) -> bool:
    return node_count(run) > 1 and "timing/comm_bytes_across" in run.data


def mib_per_row(run, warmup: int) -> float:
    """MiB all ranks sent per measured step (round)."""
    rows = bytes_per_row(run)[warmup:]
    return float(np.mean(rows)) / 2**20 if rows.size else float("nan")


def links_table(runs, warmup: int) -> Table:
    """One row per repeat group of runs that spanned two nodes or more and counted their bytes across them."""
    groups = [g for g in repeat_groups(runs) if spans_nodes(g.first)]
    cols = [Column("model"), Column("ranks", INT), Column("nodes", INT), Column("strategy"), Column("n", INT)]
    cols += [Column("MiB per step, all ranks", EST, 3), Column("across nodes (% of bytes)", EST, 1, 100)]
    cols += [Column("across nodes (% of comm + wait time)", EST, 1, 100)]
    cols += [Column("communication (% of step)", EST, 1, 100), Column("step median (ms)", EST, 2, 1e3)]
    cols += [Column("oversubscribed", FLAG), Column("runs")]
    rows = []
    for g in sorted(groups, key=lambda g: (str(g.first.config.get("model")), g.first.world_size, g.label)):
        run = g.first
        rows.append(
            [run.config.get("model"), run.world_size, node_count(run), strategy_label(run), g.n]
            + [g.pooled(lambda r: mib_per_row(r, warmup)), g.pooled(lambda r: across_share(r, warmup))]
            + [g.pooled(lambda r: across_time_share(r, warmup))]
            + [g.pooled(lambda r: comm_split(r, warmup).share), g.pooled(lambda r: step_stats(r, warmup).median_s)]
            + [g.oversubscribed, g.label]
        )
    return Table(
        "links",
        "Communication split by link: inside a node and across nodes",
        cols,
        rows,
        _notes(
            warmup,
            "across nodes = bytes the ranks sent to ranks of other nodes / all bytes sent (timing/comm_bytes_across, "
            "counted as the messages leave); across nodes (% of comm + wait time) = time in blocking calls that "
            "exchanged with other nodes / communication + waiting time (timing/comm_across over timing/comm + "
            "timing/wait, the ranks that recorded communication: not a server's or the aggregator's); nodes: the "
            "machine's, or --ranks-per-node's virtual ones",
            "--emulate-link L,B in the strategy: messages between nodes were paced to L us + bytes / B Gb/s on one "
            "host, a node's ranks sharing one outgoing link; other times are this host's",
            OVER_NOTE,
        ),
    )


TWO_LEVEL_SIZES = (8, 4096, 1 << 20, 16 << 20)
WEAK_RANKS = (64, 512, 4096)


def two_level_table(micro_runs) -> Table:
    """The two-level model of the first ``micro --op links`` file: flat and hierarchical all-reduce per size on
    2 nodes of the file's K, then in weak scaling (more nodes of K ranks, to 64, 512 and 4,096 ranks)."""
    fit = next((f for f in map(fit_links, micro_runs) if f is not None), None)
    cols = [Column("bytes", INT), Column("nodes", INT), Column("ranks per node", INT), Column("ranks", INT)]
    cols += [Column("flat (ms)", NUM, 3, 1e3), Column("hierarchical (ms)", NUM, 3, 1e3)]
    cols += [Column("hierarchical / flat", NUM, 2), Column("auto takes")]
    rows = []
    if fit is not None:
        K = fit.per_node
        layouts = [(n, 2) for n in TWO_LEVEL_SIZES] + [(16 << 20, max(r // K, 2)) for r in WEAK_RANKS]
        for nbytes, nodes in layouts:
            flat, hier = predictions(fit, nodes, K, nbytes)
            auto = "hierarchical" if hier < flat else "flat"
            rows.append([nbytes, nodes, K, nodes * K, flat, hier, hier / flat if flat else float("nan"), auto])
    notes = []
    if fit is not None:
        notes = [
            f"fitted from {fit.source}: inside a node alpha {fit.inside.alpha * 1e6:.2f} us, "
            f"{fit.inside.bandwidth / 1e9:.2f} GB/s; across nodes alpha {fit.across.alpha * 1e6:.2f} us, "
            f"{fit.across.bandwidth / 1e9:.3f} GB/s (ping-pong one-way times, weighted least squares)",
            "priced by kernels/cost.py, the model --allreduce auto decides with: a node's ranks share its link; "
            "the last rows are weak scaling of a 16 MiB buffer to more nodes of the same size",
        ]
    return Table("two_level", "Two-level cost model: flat vs hierarchical all-reduce", cols, rows, notes)


def measured_comm_per_step(run, warmup: int) -> float:
    """Mean over the computing ranks and measured steps of the communication time (``timing/comm``) per step."""
    comm = per_row(run.data, "timing/comm")[compute_ranks(run)]
    lo = warmup if comm.shape[1] > warmup else 0
    return float(comm[:, lo:].mean()) if comm[:, lo:].size else float("nan")


def two_level_steps_table(runs, micro_runs, warmup: int) -> Table:
    """Each ring or localsgd run on two nodes or more: its communication per step, measured and modelled by the
    two-level model of the first ``micro --op links`` file on the run's own layout and kernels
    (:func:`analysis.models.two_level.step_comm_seconds`)."""
    fit = next((f for f in map(fit_links, micro_runs) if f is not None), None)
    cols = [Column("model"), Column("ranks", INT), Column("nodes", INT), Column("strategy"), Column("n", INT)]
    cols += [Column("comm per step, measured (ms)", EST, 2, 1e3), Column("modelled (ms)", NUM, 2, 1e3)]
    cols += [Column("model error (%)", NUM, 1, 100), Column("oversubscribed", FLAG), Column("runs")]
    rows = []
    groups = [g for g in repeat_groups(runs) if spans_nodes(g.first)] if fit is not None else []
    for g in sorted(groups, key=lambda g: (str(g.first.config.get("model")), g.first.world_size, g.label)):
        run, modelled = g.first, step_comm_seconds(g.first, fit)
        if modelled is None:
            continue
        measured = g.pooled(lambda r: measured_comm_per_step(r, warmup))
        error = (modelled - measured.mean) / measured.mean if measured.mean else float("nan")
        rows.append([run.config.get("model"), run.world_size, node_count(run), strategy_label(run), g.n, measured]
                    + [modelled, error, g.oversubscribed, g.label])  # fmt: skip
    notes = [f"modelled: kernels/cost.py over the links fitted from {fit.source}, each bucket by the kernel the run "
             "took, on the run's own nodes; localsgd's average spread over its tau steps; measured: timing/comm, "
             "mean over computing ranks and steps"] if fit is not None else []  # fmt: skip
    return Table("two_level_steps", "Two-level model against measured runs: communication per step", cols, rows,
                 _notes(warmup, *notes, OVER_NOTE))  # fmt: skip
