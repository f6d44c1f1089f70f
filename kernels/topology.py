"""Topology: every piece of rank arithmetic in syncbench, computed once and checked.

No other module computes neighbours, roles, shard owners or client hosts from ``rank`` and ``size``: they read
the named fields here (as picotron's process-group manager does). Constructors validate their arguments and
raise :class:`TopologyError` with a message meant for the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class TopologyError(ValueError):
    """A rank layout that cannot work (e.g. no workers left after choosing servers)."""


@dataclass(frozen=True)
class Topology:
    """Who this rank is and whom it talks to.

    ``role`` is one of ``peer`` (ring, localsgd), ``server`` / ``worker`` (ps, ssp) and ``aggregator`` /
    ``client_host`` (fedavg). ``ring_ranks`` lists the ranks that take part in ring collectives, in ring
    order; ``left``/``right`` are this rank's neighbours in that ring (``None`` off the ring).
    """

    rank: int
    size: int
    role: str
    ring_ranks: tuple[int, ...]
    servers: tuple[int, ...] = ()
    workers: tuple[int, ...] = ()
    clients_of_rank: dict[int, tuple[int, ...]] = field(default_factory=dict)

    # ---- constructors -------------------------------------------------------------------------------
    @classmethod
    def ring(cls, rank: int, size: int) -> Topology:
        """All ranks are equal peers on one ring (strategies ``ring`` and ``localsgd``)."""
        _check_rank(rank, size)
        return cls(rank=rank, size=size, role="peer", ring_ranks=tuple(range(size)))

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
        role = "server" if rank in servers else "worker"
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
        role = "aggregator" if rank == 0 else "client_host"
        return cls(
            rank=rank,
            size=size,
            role=role,
            ring_ranks=tuple(range(1, size)),
            servers=(0,),
            workers=tuple(range(1, size)),
            clients_of_rank=clients_of_rank,
        )

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
            "role": self.role,
            "ring_ranks": list(self.ring_ranks),
            "servers": list(self.servers),
            "workers": list(self.workers),
            "clients_of_rank": {str(k): [v[0], v[-1] + 1] if v else [] for k, v in self.clients_of_rank.items()},
        }


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
