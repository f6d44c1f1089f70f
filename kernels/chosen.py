"""``--allreduce auto``: per buffer, the flat or the hierarchical all-reduce, whichever the two-level cost model
(:mod:`kernels.cost`) prices lower for its size on this job's nodes and links. Every rank holds the same links and
node layout, so every rank takes the same kernel for the same buffer (a precondition of matching messages)."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from kernels.cost import Link, cheaper
from kernels.hierarchical import HierarchicalAllreduce
from kernels.reference import SMALL_BYTES
from kernels.ring_allreduce import RingAllreduce
from kernels.topology import Topology


class ModelChosenAllreduce:
    """The same call as :class:`RingAllreduce` (``buf, key, add, path_bytes``); ``choices`` records, per buffer size
    in bytes, the kernel taken (for the results file)."""

    def __init__(self, comm: MPI.Comm, topology: Topology, inside: Link, across: Link, small_bytes: int = SMALL_BYTES):
        self.comm, self.topology = comm, topology
        self.kernels = {
            "flat": RingAllreduce(comm, topology, small_bytes),
            "hierarchical": HierarchicalAllreduce(comm, topology, small_bytes),
        }
        groups = topology.node_groups
        self.nodes, self.per_node = len(groups), max(len(g) for g in groups)
        self.inside, self.across, self.small_bytes = inside, across, small_bytes
        self.choices: dict[int, str] = {}

    def choice(self, nbytes: int) -> str:
        """``flat`` or ``hierarchical``: what the model prices lower for ``nbytes``, decided once per size. A
        compressed bucket passes its dense float32 size (``path_bytes``, as the kernels choose their own path):
        its kernel is chosen as for the uncompressed bucket."""
        if nbytes not in self.choices:
            layout = (self.nodes, self.per_node, self.inside, self.across, self.small_bytes)
            self.choices[nbytes] = cheaper(nbytes, *layout)
        return self.choices[nbytes]

    def kernel_for(self, nbytes: int):
        return self.kernels[self.choice(nbytes)]

    def __call__(self, buf: np.ndarray, key: int = 0, add=np.add, path_bytes: int | None = None) -> np.ndarray:
        return self.kernel_for(buf.nbytes if path_bytes is None else path_bytes)(buf, key, add, path_bytes)

    def elements_sent(self, n: int, itemsize: int = 4, path_bytes: int | None = None) -> int:
        kernel = self.kernel_for(n * itemsize if path_bytes is None else path_bytes)
        return kernel.elements_sent(n, itemsize, path_bytes)
