"""Topology: every piece of rank arithmetic in syncbench, computed once and checked.

No other module computes neighbours, roles, shard owners or client hosts from ``rank`` and ``size``: they read
the named fields here (as picotron's process-group manager does). Constructors validate their arguments and
raise :class:`TopologyError` with a message meant for the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Role(str, Enum):
    """What a rank does. A ``str`` enum: results files store the plain names (``"peer"``, ...)."""

    PEER = "peer"  # ring, localsgd: all ranks equal
    SERVER = "server"  # ps, ssp: holds parameter shards
    WORKER = "worker"  # ps, ssp: computes gradients
    AGGREGATOR = "aggregator"  # fedavg: rank 0
    CLIENT_HOST = "client_host"  # fedavg: trains its logical clients


COMPUTING_ROLES = (Role.PEER, Role.WORKER, Role.CLIENT_HOST)
"""Roles whose ranks train (analysis counts these as computing ranks)."""


class TopologyError(ValueError):
    """A rank layout that cannot work (e.g. no workers left after choosing servers)."""


@dataclass(frozen=True)
class Topology:
    """Who this rank is and whom it talks to.

    ``role`` (:class:`Role`). ``ring_ranks`` lists the ranks that take part in ring collectives, in ring
    order; ``left``/``right`` are this rank's neighbours in that ring (``None`` off the ring). Layout queries:
    ``computes``, ``partitions`` (how many parts the training data is split into), ``data_part`` (this
    rank's part; None where a rank trains no single part) and ``eval_rank`` (the rank holding the model to
    evaluate).
    """

    rank: int
    size: int
    role: Role
    ring_ranks: tuple[int, ...]
    servers: tuple[int, ...] = ()
    workers: tuple[int, ...] = ()
    clients_of_rank: dict[int, tuple[int, ...]] = field(default_factory=dict)
    nodes: tuple[int, ...] = ()  # the node of every world rank (() : all on one node); see virtual_nodes

    # ---- nodes ----------------------------------------------------------------------------------------
    @property
    def node_groups(self) -> tuple[tuple[int, ...], ...]:
        """The ring's ranks grouped by node, nodes in the order of their first ring rank, ranks in ring order."""
        return node_groups(self.ring_ranks, self.nodes)

    def sub_ring(self, ranks: tuple[int, ...]) -> Topology:
        """This rank on a ring of some of the ranks (a node's ranks, one rank per node): the same fields
        (``ring_index``, ``left``, ``right``) for the kernels that run on it."""
        return Topology(rank=self.rank, size=self.size, role=self.role, ring_ranks=tuple(ranks), nodes=self.nodes)

    # ---- constructors -------------------------------------------------------------------------------
    @classmethod
    def ring(cls, rank: int, size: int) -> Topology:
        """All ranks are equal peers on one ring (strategies ``ring`` and ``localsgd``)."""
        _check_rank(rank, size)
        return cls(rank=rank, size=size, role=Role.PEER, ring_ranks=tuple(range(size)))

    @classmethod
    def parameter_server(cls, rank: int, size: int, n_servers: int) -> Topology:
        """Ranks ``0..S-1`` are servers, the rest workers; the workers form a ring (used for evaluation
        and stop agreement only)."""
        _check_rank(rank, size)
        if n_servers < 1:
            raise TopologyError(f"--servers must be >= 1, got {n_servers}")
        if n_servers >= size:
            raise TopologyError(
                f"--servers {n_servers} leaves no worker on {size} ranks: need size > servers "
                f"(e.g. mpiexec -n {n_servers + 1})"
            )
        servers = tuple(range(n_servers))
        workers = tuple(range(n_servers, size))
        role = Role.SERVER if rank in servers else Role.WORKER
        return cls(rank=rank, size=size, role=role, ring_ranks=workers, servers=servers, workers=workers)

    @classmethod
    def federated(cls, rank: int, size: int, n_clients: int) -> Topology:
        """Rank 0 aggregates; ranks ``1..size-1`` host the logical clients, spread evenly in contiguous
        blocks (client ``k`` lives on exactly one rank; block sizes differ by at most one)."""
        _check_rank(rank, size)
        if size < 2:
            raise TopologyError("fedavg needs at least 2 ranks (an aggregator and one client rank)")
        hosts = size - 1
        if n_clients < hosts:
            raise TopologyError(f"--clients {n_clients} is fewer than the {hosts} client ranks; need K >= size - 1")
        clients_of_rank = {0: ()}
        for h in range(hosts):
            lo, hi = block_bounds(n_clients, hosts, h)
            clients_of_rank[h + 1] = tuple(range(lo, hi))
        role = Role.AGGREGATOR if rank == 0 else Role.CLIENT_HOST
        return cls(
            rank=rank,
            size=size,
            role=role,
            ring_ranks=tuple(range(1, size)),
            servers=(0,),
            workers=tuple(range(1, size)),
            clients_of_rank=clients_of_rank,
        )

    # ---- layout -----------------------------------------------------------------------------------------
    @property
    def computes(self) -> bool:
        return self.role in COMPUTING_ROLES

    @property
    def partitions(self) -> int:
        """Parts the training data is split into: one per computing rank, or per logical client (fedavg)."""
        if self.role in (Role.AGGREGATOR, Role.CLIENT_HOST):
            return sum(len(c) for c in self.clients_of_rank.values())
        return len(self.workers) if self.workers else self.size

    @property
    def data_part(self) -> int | None:
        """The part this rank trains on: its index among the computing ranks; None for servers, the
        aggregator and client hosts (which train many clients' parts)."""
        if self.role == Role.PEER:
            return self.rank
        if self.role == Role.WORKER:
            return self.workers.index(self.rank)
        return None

    @property
    def eval_rank(self) -> int:
        """The rank that holds the current model: the first worker of a parameter server, else rank 0."""
        return self.workers[0] if self.role in (Role.SERVER, Role.WORKER) else 0

    # ---- ring arithmetic ------------------------------------------------------------------------------
    @property
    def on_ring(self) -> bool:
        return self.rank in self.ring_ranks

    @property
    def ring_size(self) -> int:
        return len(self.ring_ranks)

    @property
    def ring_index(self) -> int:
        """Position of this rank on the ring (0-based)."""
        return self.ring_ranks.index(self.rank)

    @property
    def right(self) -> int:
        """Rank this rank sends to in a ring step."""
        ring = self.ring_ranks
        return ring[(self.ring_index + 1) % len(ring)]

    @property
    def left(self) -> int:
        """Rank this rank receives from in a ring step."""
        ring = self.ring_ranks
        return ring[(self.ring_index - 1) % len(ring)]

    # ---- federated arithmetic -------------------------------------------------------------------------
    @property
    def my_clients(self) -> tuple[int, ...]:
        return self.clients_of_rank.get(self.rank, ())

    def host_of_client(self, client: int) -> int:
        """Rank that hosts logical client ``client``."""
        for r, clients in self.clients_of_rank.items():
            if clients and clients[0] <= client <= clients[-1]:
                return r
        raise TopologyError(f"client {client} is not hosted by any rank")

    def describe(self) -> dict:
        """JSON-friendly summary for the results file."""
        return {
            "role": self.role.value,
            "ring_ranks": list(self.ring_ranks),
            "servers": list(self.servers),
            "workers": list(self.workers),
            "clients_of_rank": {str(k): [v[0], v[-1] + 1] if v else [] for k, v in self.clients_of_rank.items()},
            "nodes": list(self.nodes),
        }


def virtual_nodes(size: int, ranks_per_node: int) -> tuple[int, ...]:
    """``--ranks-per-node K``: consecutive ranks ``[jK, (j + 1)K)`` form node ``j`` (the last node may be
    smaller), as a block distribution places ranks on nodes."""
    if ranks_per_node < 1:
        raise TopologyError(f"--ranks-per-node must be >= 1, got {ranks_per_node}")
    return tuple(rank // ranks_per_node for rank in range(size))


def node_groups(ranks: tuple[int, ...], nodes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """``ranks`` grouped by their node in ``nodes`` (node of every world rank; empty: one node), nodes in the
    order of their first rank in ``ranks``."""
    groups: dict[int, list[int]] = {}
    for rank in ranks:
        groups.setdefault(nodes[rank] if nodes else 0, []).append(rank)  # pragma: no mutate (any one key)
    return tuple(tuple(g) for g in groups.values())


def chunk_owner(chunk: int, node_size: int) -> int:
    """Hierarchical all-reduce on nodes of unequal size: the buffer is cut into as many chunks as the largest
    node has ranks, and the rank at local index ``chunk mod node_size`` of each node owns ``chunk`` (so a rank
    of a smaller node owns several)."""
    return chunk % node_size


def block_bounds(n: int, parts: int, index: int) -> tuple[int, int]:
    """Half-open bounds of block ``index`` when ``n`` items are split into ``parts`` contiguous blocks whose
    sizes differ by at most one (the first ``n % parts`` blocks get the extra item). Used for ring chunks,
    client placement and shards, so all of them split the same way."""
    if parts <= 0:
        raise ValueError(f"parts must be positive, got {parts}")
    if not 0 <= index < parts:
        raise ValueError(f"block index {index} out of range for {parts} parts")
    base, extra = divmod(n, parts)
    lo = index * base + min(index, extra)
    hi = lo + base + (1 if index < extra else 0)
    return lo, hi


def _check_rank(rank: int, size: int) -> None:
    if size < 1:
        raise TopologyError(f"world size must be >= 1, got {size}")
    if not 0 <= rank < size:
        raise TopologyError(f"rank {rank} out of range for size {size}")
