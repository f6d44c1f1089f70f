"""``python -m bench train``: set up on every rank (agreeing on errors), then run the strategy's schedule."""

from __future__ import annotations

import json
import os
import sys

from mpi4py import MPI

from bench import setup
from bench.measure import provenance
from bench.run.checkpoint import finished
from bench.run.trainer import Trainer
from bench.runtime.launch import agree, check_world_size, configure_threads
from bench.runtime.signals import STOP
from bench.runtime.watchdog import WATCHDOG


def train(cfg, comm: MPI.Comm) -> int:
    agree(comm, check_world_size, comm)
    threads = agree(comm, configure_threads, comm, cfg.threads)
    ended = agree(comm, finished, cfg)
    if ended:
        if comm.rank == 0:
            print(f"syncbench: {ended}")
        return 0
    if comm.rank == 0 and cfg.stop_file and os.path.exists(cfg.stop_file):
        print(f"syncbench: warning: the stop file {cfg.stop_file} exists: the run stops at its first agreed step "
              "(remove it to run on)", file=sys.stderr)  # fmt: skip
    run = setup.build(cfg, comm)
    attrs = provenance.collect(comm, threads)
    attrs |= {
        "strategy": cfg.strategy,
        "config": json.loads(cfg.to_json()),
        "roles": comm.allgather(run.strategy.topology.role),
        "strategy_info": run.strategy.describe(),
        "nodes": list(run.strategy.topology.nodes),  # the node of each rank (virtual with --ranks-per-node)
        **cfg.strategy_attributes(),  # analysis reads the strategy's facts from the file, not from lists of names
        "per_rank_batch": run.batch,
        "compute_ranks": run.strategy.topology.partitions,
        "device": str(run.device),
        "timing_method": "forward: module pre/post hooks; backward: gradient-accumulation events; "
        "comm: host clock around each exchange; wait: barrier before communication",
    }
    WATCHDOG.enable_diagnosis(comm)
    return Trainer(run, comm, attrs, STOP).train()
