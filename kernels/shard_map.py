"""Which server owns which parameters: a pure function of the layer sizes and the number of servers.

All parameters, in layer order, form one flat vector of N elements. Server ``s`` owns one contiguous range of it,
``[bounds[s], bounds[s+1])``. The ideal cut points are ``k N / S`` (perfect balance by bytes, all parameters are
float32); a cut is moved to the nearest layer edge when that edge lies within ``tolerance * N / S`` of the ideal
point, so small layers stay whole, and a layer that dominates is split in chunks at the ideal points (the
balance rule of sharded parameter servers such as Li et al. 2014, "Scaling distributed machine learning with the
parameter server", Sec. 4: key ranges by size). A *piece* is the part of one layer that one server owns: the unit of
a push or pull message.

Because servers own increasing ranges, walking the pieces in layer order visits the servers in increasing order;
workers push in that order, which is what keeps blocking sends to several servers free of deadlock (a total order
on the servers, as with lock ordering).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    index: int  # position in the global piece list (also the message tag index)
    layer: int
    lo: int  # layer-local element range [lo, hi)
    hi: int
    server: int  # 0-based server index (not a rank)
    offset: int  # global flat offset of element ``lo``

    @property
    def numel(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class ShardMap:
    bounds: tuple[int, ...]  # S + 1 flat cut points, bounds[0] = 0, bounds[-1] = N
    pieces: tuple[Piece, ...]

    @property
    def n_servers(self) -> int:
        return len(self.bounds) - 1

    def server_range(self, server: int) -> tuple[int, int]:
        return self.bounds[server], self.bounds[server + 1]

    def pieces_of_server(self, server: int) -> tuple[Piece, ...]:
        return tuple(p for p in self.pieces if p.server == server)

    def pieces_of_layer(self, layer: int) -> tuple[Piece, ...]:
        return tuple(p for p in self.pieces if p.layer == layer)

    def server_numel(self) -> list[int]:
        return [hi - lo for lo, hi in zip(self.bounds, self.bounds[1:])]

    def describe(self) -> dict:
        """JSON-friendly, for the results file."""
        return {
            "bounds": list(self.bounds),
            "pieces": [[p.layer, p.lo, p.hi, p.server] for p in self.pieces],
            "columns": ["layer", "lo", "hi", "server"],
        }


def shard_map(
    layer_numels: list[int], n_servers: int, tolerance: float = 0.1, whole: list[int] | None = None
) -> ShardMap:
    """Split layers of sizes ``layer_numels`` over ``n_servers`` servers (see the module docstring). ``whole``:
    the sizes of the parameter tensors in flat order, when each must stay on one server (a layer-wise trust
    ratio, LARS/LAMB, needs a whole tensor's norm): every cut then lies on the tensor edge nearest its ideal
    point, whatever the balance."""
    if n_servers < 1:
        raise ValueError(f"need at least one server, got {n_servers}")
    total = sum(layer_numels)
    if total < n_servers:
        raise ValueError(f"{total} parameters cannot be spread over {n_servers} servers (each needs one)")
    edges = _edges(layer_numels)
    if whole is not None and sum(whole) != total:
        raise ValueError(f"the tensors hold {sum(whole)} parameters, the layers {total}")
    bounds = _tensor_cuts(whole, n_servers) if whole is not None else _balanced_cuts(edges, n_servers, tolerance)
    pieces: list[Piece] = []
    for layer, (start, end) in enumerate(zip(edges, edges[1:])):
        for server, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            a, b = max(start, lo), min(end, hi)
            if a < b:
                pieces.append(Piece(len(pieces), layer, a - start, b - start, server, a))
    return ShardMap(tuple(bounds), tuple(pieces))


def _edges(numels: list[int]) -> list[int]:
    """Flat offsets where each consecutive block of ``numels`` starts, and the total at the end."""
    return [0, *itertools.accumulate(numels)]


def _tensor_cuts(tensor_numels: list[int], n_servers: int) -> list[int]:
    """Cut points on tensor edges only, each the edge nearest ``k N / S`` among those that leave every later
    server at least one tensor."""
    edges = _edges(tensor_numels)
    total, inner = edges[-1], edges[1:-1]
    if len(inner) < n_servers - 1:
        raise ValueError(f"{len(tensor_numels)} whole parameter tensors cannot be spread over {n_servers} servers")
    bounds = [0]
    for k in range(1, n_servers):
        later = n_servers - 1 - k  # cuts still to place after this one
        free = [e for e in inner if e > bounds[-1]]
        free = free[: len(free) - later]
        bounds.append(min(free, key=lambda e: (abs(e - k * total / n_servers), e)))
    return bounds + [total]


def _balanced_cuts(edges: list[int], n_servers: int, tolerance: float) -> list[int]:
    total = edges[-1]
    target = total / n_servers
    bounds = [0]
    for k in range(1, n_servers):
        ideal = round(k * target)
        nearest = min(edges, key=lambda e: abs(e - ideal))
        cut = nearest if abs(nearest - ideal) <= tolerance * target else ideal
        if cut <= bounds[-1] or cut >= total:  # snapping must not empty a server
            cut = ideal
        bounds.append(max(cut, bounds[-1] + 1))
    return bounds + [total]
