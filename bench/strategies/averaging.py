"""Averaging over the ring: the one place that turns staged buffers + the ring kernel into timed exchanges.

``ring`` averages gradients before the update; ``localsgd`` averages parameters after local updates. Both
pack a group of layers into a host buffer, sum it over the ring's ranks (ring schedule, or recursive doubling
for small buffers), and unpack it scaled by 1/p; the packing and unpacking of consecutive groups overlap on a GPU
(:class:`bench.comm.pipeline.BucketPipeline`, ``--buckets-in-flight``).
"""

from __future__ import annotations

from bench.comm.exchange import Exchange
from bench.comm.pipeline import BucketPipeline
from bench.comm.staging import HostStaging
from kernels.ring_allreduce import RingAllreduce


def average_exchanges(staging: HostStaging, allreduce: RingAllreduce, grads: bool, pipeline: BucketPipeline,
                      after=None) -> list[Exchange]:  # fmt: skip
    """One :class:`Exchange` per staged group, run in group order: mean over the ring of the group's gradients
    (``grads``) or parameters, its copies through ``pipeline``. ``after(g)``, if given, runs on the averaged host
    buffer before it is written back (SlowMo)."""
    topo = allreduce.topology
    p = topo.ring_size
    exchanges = []
    for g, group in enumerate(staging.groups):
        buf = staging.numpy[g]
        sent = allreduce.elements_sent(buf.size, buf.itemsize) * buf.itemsize

        def run(g=g, sent=sent) -> int:
            allreduce(pipeline.fetch(g, grads), key=g)
            staging.scale(g, 1.0 / p)
            if after is not None:
                after(g)
            pipeline.store(g, grads)
            return sent

        exchanges.append(Exchange(group, run))
    return exchanges
