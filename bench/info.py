"""``python -m bench info``: what a run here would use: MPI library, ranks, cores, threads, versions."""

from __future__ import annotations

import os
import socket

from mpi4py import MPI

from bench.comm.cuda_aware import query_cuda_support
from bench.measure import provenance
from bench.runtime.launch import node_ids, node_local, usable_cores


def info(comm: MPI.Comm, args=None) -> int:
    if args is not None and args.model:
        return model_layers(comm, args.model, args.shape, args.classes)
    local = node_local(comm)[1]
    nodes = list(node_ids(comm))
    hosts = comm.gather(socket.gethostname(), root=0)
    if comm.rank == 0:
        import torch

        cores = usable_cores()
        print(f"MPI library      {provenance.mpi_library()}")
        print(f"MPI standard     {'.'.join(map(str, MPI.Get_version()))}, thread level {MPI.Query_thread()}")
        print(f"ranks            {comm.size} on {len(set(hosts))} host(s): {', '.join(sorted(set(hosts)))}")
        print(f"cores            {cores} usable on this host, {local} rank(s) on it")
        sizes = [nodes.count(n) for n in sorted(set(nodes))]
        print(f"nodes            {len(sizes)} (ranks sharing memory), ranks per node {sizes}; bench train "
              "--ranks-per-node K declares virtual ones")  # fmt: skip
        print(f"threads per rank {max(1, cores // local)} (default: cores / ranks on the node, at least 1)")
        if local > cores:
            print(f"note             {local} ranks share {cores} cores: timings are oversubscribed")
        print(f"cuda             {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")
        aware = query_cuda_support()
        answer = {True: "yes", False: "no", None: "unknown"}[aware.answer]
        print(f"CUDA-aware MPI   {answer} ({aware.source}; --gpu-path auto hands device buffers to MPI only on yes)")
        for key, value in provenance.versions().items():
            print(f"{key:16s} {value}")
        print(f"git commit       {provenance.git_commit()}")
        job = os.environ.get("SLURM_JOB_ID")
        if job:
            print(f"slurm job        {job} ({os.environ.get('SLURM_JOB_NODELIST', '')})")
    return 0


def model_layers(comm: MPI.Comm, name: str, shape: str, classes: int) -> int:
    """``info --model NAME``: the model's layers in the order the suite counts them (``--tier-frozen moderate:N``
    leaves the first N untrained), each with its parameters, float32 bytes and stage (``--freeze-cache``)."""
    from bench.runtime.errors import UsageError
    from bench.workload.models import build, layers_of
    from bench.workload.stages import stage_layer_counts

    try:
        dims = tuple(int(d) for d in shape.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise UsageError(f"--shape {shape!r}: expected CxHxW, e.g. 3x32x32")
    model = build(name, dims, classes, 0)
    layers = layers_of(model)
    counts = stage_layer_counts(model.stages(), layers)
    stage_of = [s for s, count in enumerate(counts) for _ in range(count)]
    if comm.rank == 0:
        total = sum(layer.numel for layer in layers)
        print(f"model {name} on {shape} samples, {classes} classes: {len(layers)} layers, {total:,} parameters")
        print(f"{'layer':>5}  {'name':24s} {'parameters':>12} {'bytes':>12}  {'share':>6}  stage")
        for layer in layers:
            share = 100 * layer.numel / total
            print(f"{layer.index:5d}  {layer.name:24s} {layer.numel:12,d} {layer.bytes:12,d}  {share:5.1f} %  "
                  f"{stage_of[layer.index]:5d}")  # fmt: skip
        print("--freeze-cache keeps the output of the stages a frozen prefix holds whole (not the last stage)")
    return 0
