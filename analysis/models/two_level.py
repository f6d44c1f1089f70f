"""The two-level cost model fitted from a ``micro --op links`` file: alpha and beta for the link inside a node and
for the link across nodes, each a weighted least-squares fit of the ping-pong's one-way times (Hockney 1994;
:func:`analysis.models.costmodel.fit_p2p`), priced through :mod:`kernels.cost` (the model ``--allreduce auto``
decides with) for the flat and the hierarchical all-reduce on N nodes of K ranks, at the file's own layout and in
weak scaling (more nodes of the same K, the same bytes per rank) up to 4,096 ranks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.models.costmodel import AlgorithmFit, fit_p2p
from kernels.cost import KERNELS, Link, flat_seconds, hierarchical_seconds

LINKS = ("inside", "across")


@dataclass
class TwoLevelFit:
    inside: AlgorithmFit
    across: AlgorithmFit
    source: str  # the file and its layout
    per_node: int  # K of the file's layout: its largest node (2 for a file that did not record its nodes)

    def links(self) -> tuple[Link, Link]:
        return Link(self.inside.alpha, self.inside.beta), Link(self.across.alpha, self.across.beta)


def fit_links(run) -> TwoLevelFit | None:
    """Both links' fits from a micro file that timed them over two sizes or more, else None."""
    fits = {}
    for link in LINKS:
        key = f"micro/links/{link}/time_s"
        if key not in run.data or run.data[key].shape[0] < 2:
            return None
        sizes = run.data[f"micro/links/{link}/size_bytes"]
        fits[link] = fit_p2p(sizes, np.nanmedian(run.data[key], axis=1)).algorithms["ring"]  # one fit for any size
    config = run.attrs.get("config") or {}
    nodes = list(run.attrs.get("nodes") or [])  # the layout measured (files from before it: --ranks-per-node, or 2)
    per_node = max(nodes.count(k) for k in set(nodes)) if nodes else int(config.get("ranks_per_node") or 2)
    how = f", emulated link {config['emulate_link']}" if config.get("emulate_link") else ""
    return TwoLevelFit(fits["inside"], fits["across"], f"{run.name} ({run.world_size} ranks{how})", per_node)


def predictions(fit: TwoLevelFit, nodes: int, per_node: int, nbytes: float) -> tuple[float, float]:
    """(flat, hierarchical) seconds of one all-reduce of ``nbytes`` on ``nodes`` nodes of ``per_node`` ranks."""
    inside, across = fit.links()
    return (
        flat_seconds(nbytes, nodes, per_node, inside, across),
        hierarchical_seconds(nbytes, nodes, per_node, inside, across),
    )


def layout(run) -> tuple[int, int]:
    """(nodes, ranks on the largest node) of a run's recorded layout (one node for files written before it)."""
    nodes = list(run.attrs.get("nodes") or [0] * run.world_size)
    return len(set(nodes)), max(nodes.count(k) for k in set(nodes))


def step_comm_seconds(run, fit: TwoLevelFit) -> float | None:
    """Modelled communication seconds per step of a ``ring`` or ``localsgd`` run on its own layout over the two
    links: each bucket all-reduced by the kernel it took (``--allreduce flat`` or ``hierarchical``, or what
    ``auto`` recorded per bucket in ``strategy_info.allreduce_chosen``), localsgd's averages spread over its steps
    at the rate it recorded (``localsgd/synced``: every tau steps, each warm-up step and the last; 1 / tau in a
    file without it). None for the others (their stages are not priced by link: parameter servers and FedAvg's uploads,
    compressed exchanges, ddp's gloo)."""
    from analysis.data.facts import exchange
    from analysis.models.compress import compress_wire
    from analysis.models.prediction import exchanged_buffers

    if exchange(run) not in ("allreduce", "periodic") or compress_wire(run) or run.config.get("strategy") == "ddp":
        return None
    nodes, per_node = layout(run)
    inside, across = fit.links()
    buffers = exchanged_buffers(run)
    chosen = (run.attrs.get("strategy_info") or {}).get("allreduce_chosen")
    kernels = chosen or [run.config.get("allreduce") or "flat"] * len(buffers)
    if len(kernels) != len(buffers):  # a file whose recorded choices do not match its buckets: not priced
        return None
    seconds = sum(KERNELS[k](n, nodes, per_node, inside, across) for k, n in zip(kernels, buffers))
    if exchange(run) != "periodic":
        return seconds
    synced = run.data.get("localsgd/synced") if hasattr(run.data, "get") else None
    if synced is not None and synced.size:
        return seconds * float(np.mean(synced[0]))
    return seconds / max(1, int(run.config.get("local_steps", 1)))
