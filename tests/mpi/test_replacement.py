"""A fedavg run resumed on another number of ranks (issue 29: clients are logical, so they are placed anew).

The first segment runs on a sub-communicator (one rank fewer, or all ranks), the resumed one on the other. The
oracle is the same run never stopped, on all ranks. What does not depend on the placement is compared exactly:
which clients were sampled each round and with how many samples and which status, and which clients hold state at
the end (SCAFFOLD's c_i, the error-feedback memories of compressed uploads: an entry lost or duplicated in the
re-placement fails here). Values are compared to float32 rounding: the hosts' partial sums group the clients
otherwise on another rank count, so the aggregate rounds otherwise (bench/run/replacement.py)."""

import dataclasses
import json

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from bench import setup
from bench.run.trainer import Trainer
from bench.runtime.signals import StopFlag

from .conftest import all_agree
from .test_checkpoint import ROWS, StopNow
from .test_fedavg import fed_cfg

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]

ROUNDING = dict(rtol=1e-4, atol=1e-6)
"""Float32 sums grouped otherwise, over 23 rounds of a small model (the largest difference seen: in the note)."""

PER_CLIENT = ("algorithm/client_variates", "host/encoder/feedback/memory", "host/kept")
CASES = {
    "scaffold-more": dict(fl_algorithm="scaffold"),
    "topk-feedback-fewer": dict(compress="topk:0.3"),
    "fedlama-more": dict(fl_algorithm="fedlama", local_steps=2, fedlama_phi=3),  # stopped mid-block (row 10)
}
"""Each kind of per-client state, re-placed onto more ranks or fewer."""


def run_on(comm, cfg, stop) -> Trainer | None:
    """The run on ``comm`` (None on ranks outside it, which wait for the others)."""
    trainer = None
    if comm != MPI.COMM_NULL:
        built = setup.build(cfg, comm)
        roles = comm.allgather(built.strategy.topology.role)
        attrs = {"strategy": cfg.strategy, "config": json.loads(cfg.to_json()), "world_size": comm.size, "roles": roles}
        trainer = Trainer(built, comm, attrs, stop)
        trainer.train()
    MPI.COMM_WORLD.Barrier()
    return trainer


def ranks(n: int):
    world = MPI.COMM_WORLD
    return world.Split(0 if world.rank < n else MPI.UNDEFINED, world.rank)


def client_state(trainer: Trainer | None) -> dict:
    """Every client's per-client state across the run's ranks, gathered on world rank 0: {(dict, key): array}."""
    mine = {}
    if trainer is not None:
        strategy = trainer.run.strategy
        for path in PER_CLIENT:
            holder = strategy
            for attr in path.split("/"):
                holder = getattr(holder, attr, None) if holder is not None else None
            for key, value in (holder or {}).items():
                mine[(path, key)] = np.asarray(value, dtype=np.float64)
    found: dict = {}
    for part in MPI.COMM_WORLD.gather(mine, root=0) or []:
        found |= {("on two ranks", *k): None for k in found.keys() & part.keys()}  # fails the key comparison
        found |= part
    return found


def client_log(path: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        rows = np.stack([f[f"fedavg/clients/{k}"][()] for k in ("round_number", "client", "samples", "status")], 1)
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


def same_run(expected, got, whole, resumed, out, sizes) -> bool:
    """Rank 0: per-client state, global model, client log and the results file's layout against the oracle."""
    first, then, small, large, direction = sizes
    ok = expected.keys() == got.keys() and all(np.allclose(got[k], v, **ROUNDING) for k, v in expected.items())
    ours, theirs = resumed.run.strategy.aggregator.values, whole.run.strategy.aggregator.values
    ok &= all(np.allclose(a, b, **ROUNDING) for a, b in zip(ours, theirs, strict=True))
    ok &= np.array_equal(client_log(out), client_log(whole.run.out))
    with h5py.File(out, "r") as f:
        segments = json.loads(f.attrs["segments"])
        ok &= [s["world_size"] for s in segments] == [first, then] and f.attrs["status"] == "complete"
        ok &= f.attrs["world_size"] == then and f["timing/total"].shape[:2] == (large, ROWS)
        ok &= len(json.loads(f.attrs["roles"])) == large  # every rank of the axis, the absent one's from before
        late_host = f["timing/total"][small]  # the rank the smaller segment lacks
        absent, present = (late_host[:10], late_host[10:]) if direction == "more" else (late_host[10:], late_host[:10])
        ok &= bool(np.isnan(absent).all() and np.isfinite(present).all())
    if not ok:
        print(f"rank 0: keys {sorted(expected) == sorted(got)}, segments {segments}", flush=True)
    return bool(ok)


@pytest.mark.parametrize("case", list(CASES))
def test_a_federated_run_resumes_on_another_rank_count(shared_tmp, case):
    world = MPI.COMM_WORLD
    if world.size != 3:
        pytest.skip("2 ranks and 3 (the placement's arithmetic is Topology's, tested at every size)")
    small, large = world.size - 1, world.size
    direction = case.split("-")[-1]
    first, then = (small, large) if direction == "more" else (large, small)
    algorithm = CASES[case] | dict(fraction=0.25, placement="static")  # 3 of 12 a round: most state from row 7
    cfg = fed_cfg(shared_tmp, rounds=ROWS, clients=12, eval_every=4, **algorithm)
    whole = run_on(world, dataclasses.replace(cfg, out=f"{shared_tmp}/whole.h5"), StopFlag())
    parted = dataclasses.replace(cfg, out=f"{shared_tmp}/parted.h5", checkpoint_every=7)
    stopped = run_on(ranks(first), parted, StopNow())
    resumed = run_on(ranks(then), dataclasses.replace(parted, resume=True), StopFlag())
    ok = stopped is None or stopped.ctx.done == 10
    ok &= resumed is None or resumed.ctx.done == ROWS
    expected, got = client_state(whole), client_state(resumed)
    if world.rank == 0:
        try:
            ok &= same_run(expected, got, whole, resumed, parted.out, (first, then, small, large, direction))
        except Exception as exc:  # noqa: BLE001 (rank 0 alone: the others wait in all_agree)
            print(f"rank 0: {exc!r}", flush=True)
            ok = False
    assert all_agree(ok), f"{case}: the run resumed on another rank count differs"
