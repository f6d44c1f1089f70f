"""Build everything a training run needs, on every rank, failing the same way everywhere (see
:func:`bench.runtime.agree`): data, partition, model, strategy, output path."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from mpi4py import MPI

from bench.measure import results
from bench.runtime.errors import UsageError
from bench.runtime.launch import agree, node_local
from bench.runtime.watchdog import WATCHDOG
from bench.strategies import strategy_class
from bench.strategies.base import Strategy
from bench.workload import data, models, partition
from bench.workload.loader import PartitionLoader
from bench.workload.stragglers import Straggler
from kernels.topology import TopologyError

SETUP_TIMEOUT_S = 600.0


@dataclass
class Run:
    cfg: object
    dataset: data.Dataset
    parts: list[np.ndarray]
    model: torch.nn.Module
    layers: list[models.Layer]
    strategy: Strategy
    loader: PartitionLoader | None
    device: torch.device
    out: str
    batch: int  # samples per rank per step (update): micro-batch x --accumulate-steps


def output_path(cfg, size: int) -> str:
    fields = {
        "strategy": cfg.strategy,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "ranks": size,
        "seed": cfg.seed,
        "job": os.environ.get("SLURM_JOB_ID", "local"),
    }
    try:
        return cfg.out.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"--out {cfg.out}: bad placeholder ({exc}); use {{strategy}} {{model}} {{dataset}} "
            "{ranks} {job} {seed}"
        ) from None


def pick_device(cfg) -> torch.device:
    """``cuda:<node-local rank mod devices>`` or ``cpu``. The node-local rank is a collective (Split_type), so
    it is computed before any check that could fail on one node only (a node without a GPU)."""
    if cfg.device != "cuda":
        return torch.device("cpu")
    local = node_local(MPI.COMM_WORLD)[0]
    if not torch.cuda.is_available():
        raise UsageError("--device cuda: this torch build or machine has no CUDA device")
    dev = torch.device("cuda", local % torch.cuda.device_count())
    torch.cuda.set_device(dev)
    return dev


def check_output(cfg, comm: MPI.Comm) -> str:
    """Phase 1 (rank 0 only touches the file system): the results path must be writable."""
    out = output_path(cfg, comm.size)
    if comm.rank == 0:
        try:
            results.check_writable(out)
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return out


def check_options(cfg, comm: MPI.Comm) -> None:
    """Phase 0: options that depend on the world size."""
    Straggler(cfg, comm.rank, comm.size)


def prepare(cfg) -> tuple:
    """Phase 2, no communication: data and model. May fail on some ranks only (e.g. a file one node lacks)."""
    ds = data.load(cfg)
    model = models.build(cfg.model, ds.shape, ds.classes, cfg.seed)
    return ds, model


def connect(cfg, comm: MPI.Comm, out: str, ds, model) -> Run:
    """Phase 3: device, strategy (which duplicates the communicator: a collective) and partition.

    Every check here fails identically on every rank *before* any collective call, so no rank can be left
    waiting in one; see :func:`bench.runtime.agree`.
    """
    device = pick_device(cfg)
    model = model.to(device)
    layers = models.layers_of(model)
    try:
        strategy = strategy_class(cfg.strategy)(cfg, comm, model, layers, device)
    except TopologyError as exc:
        raise UsageError(str(exc)) from None
    n_parts = strategy.topology.partitions
    if cfg.global_batch_size and cfg.global_batch_size % n_parts:
        raise UsageError(f"--global-batch-size {cfg.global_batch_size} does not split evenly over {n_parts} ranks")
    batch = cfg.per_rank_batch(n_parts)
    if batch <= 0:
        raise UsageError(f"per-rank batch is 0: --global-batch-size {cfg.global_batch_size} < {n_parts} ranks")
    if batch % cfg.accumulate_steps:
        raise UsageError(
            f"the per-rank batch {batch} does not split into --accumulate-steps {cfg.accumulate_steps} equal "
            "micro-batches"
        )
    over = max(n_parts, cfg.partition_over)  # fedavg --partition-over N: the first K of N parts
    try:
        parts = partition.make(
            cfg.partition,
            ds.y_train,
            over,
            cfg.seed,
            alpha=cfg.alpha,
            shards_per_part=cfg.shards_per_part,
            groups=ds.groups,
        )[:n_parts]
    except ValueError as exc:
        raise UsageError(f"--partition {cfg.partition}: {exc}") from None
    smallest = min(len(p) for p in parts)
    if smallest == 0:
        raise UsageError(
            f"--partition {cfg.partition} left a partition empty ({len(ds.y_train)} samples over {n_parts} parts): "
            "use fewer clients or ranks, or another partition"
        )
    micro = batch // cfg.accumulate_steps  # what the loader hands out; ``batch`` is per update
    if micro > smallest and strategy.needs_full_batches:
        raise UsageError(
            f"batch size {micro} is larger than the smallest partition ({smallest} samples of "
            f"{len(ds.y_train)} over {n_parts} ranks): lower --batch-size or use fewer ranks"
        )
    loader = None
    part = strategy.topology.data_part
    if part is not None:  # a rank that trains one part (fedavg's client hosts load their clients' parts)
        mine = parts[part]
        loader = PartitionLoader(ds.x_train[mine], ds.y_train[mine], micro, cfg.seed, part, device)
        if cfg.freeze_cache:
            strategy.freezer.keep_activations(model, loader, int(cfg.freeze_cache_mb * 2**20))
    return Run(cfg, ds, parts, model, layers, strategy, loader, device, out, batch)


def build(cfg, comm: MPI.Comm) -> Run:
    """All of set-up, in the phases above, each agreed on by every rank. The watchdog ends the job if set-up
    stalls anyway; set-up includes rank-local work (reading data), so it gets at least SETUP_TIMEOUT_S, not
    just ``--timeout`` (which bounds waiting on peers). The training loop re-arms it."""
    WATCHDOG.arm(max(cfg.timeout, SETUP_TIMEOUT_S), "set-up")
    agree(comm, check_options, cfg, comm)
    out = agree(comm, check_output, cfg, comm)
    ds, model = agree(comm, prepare, cfg)
    return agree(comm, connect, cfg, comm, out, ds, model)
