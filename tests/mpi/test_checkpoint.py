"""Checkpoint and resume (issue 29): a run stopped at row 10 and resumed with ``--resume`` ends bit for bit where
the run that was never stopped ends: every rank's whole state (model, optimizer, compression memories, SlowMo
buffers, server shards, FedAvg's server and per-client state) and the results file's loss and accuracy rows. The
oracle is the uninterrupted run itself (the equivalence resume == no stop), for each stateful part."""

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from bench import setup
from bench.run.trainer import Trainer
from bench.runtime.signals import StopFlag

from .conftest import all_agree
from .test_ring_training import make_cfg

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]

ROWS = 23  # a stop at row 10 (the first agreed check), resumed to a row that is not a multiple of it
LOCKSTEP = {
    "ring-momentum": dict(strategy="ring", momentum=0.9),
    "ring-topk-feedback": dict(strategy="ring", compress="topk:0.2"),
    "ring-powersgd": dict(strategy="ring", compress="powersgd:1", model="cnn", synthetic_shape="1x8x8"),
    "localsgd-slowmo": dict(strategy="localsgd", local_steps=3, outer_momentum=0.5, outer_lr=0.9, warmup_steps=2),
    # frozen before the stop (rows 6 and 9), pending at the stop's checkpoint, decided after it (rows 12, 15, ...)
    "localsgd-freeze": dict(strategy="localsgd", local_steps=3, freeze="auto:0.9", freeze_every=4),
    # frozen (stem and 2 blocks) and its wrapper rebuilt at row 6, so the resumed ddp rewraps, then replays; the
    # cache starts empty on resume and recomputes what the whole run kept
    "ddp-adam-batchnorm-freeze": dict(
        strategy="ddp",
        optimizer="adam",
        lr=0.01,
        model="resnet20",
        synthetic_shape="1x4x4",
        freeze="fixed:10@6",
        freeze_cache=True,
    ),
    "ps-sync-lamb": dict(strategy="ps", optimizer="lamb", compress="qsgd:4"),
    "ps-sync-freeze": dict(strategy="ps", momentum=0.9, freeze="fixed:1@6"),  # servers hold layer 0 from row 6
}
FEDERATED = {
    "fedavg-adam-server": dict(server_opt="adam", server_lr=0.05),
    "scaffold": dict(fl_algorithm="scaffold", fraction=0.2, clients=12),  # most c_i resumed from row 7's pieces
    "feddyn": dict(fl_algorithm="feddyn", feddyn_alpha=0.1, fraction=0.5),
    "fedlama": dict(fl_algorithm="fedlama", local_steps=2, fedlama_phi=3, fraction=0.5, clients=6),  # mid-block at 10
    "topk-feedback": dict(compress="topk:0.3"),
}


LAST_BITS = 1e-6
"""The tolerance of the one series summed in an order a run does not decide (ARRIVAL below). ddp is compared bit
for bit at every rank count: it once differed at 3+ ranks by 4.5e-8 (DDP's first iteration after construction
sums in one bucket; the resumed DDP now replays its bucket layout first: bench/strategies/ddp.py)."""


class StopNow(StopFlag):
    """A stop request present from the start: the run stops at its first agreed check (row 10)."""

    def __init__(self):
        super().__init__()
        self.signal_name = "test stop"


def run(cfg, stop) -> Trainer:
    comm = MPI.COMM_WORLD
    built = setup.build(cfg, comm)
    attrs = {"strategy": cfg.strategy, "config": json.loads(cfg.to_json()), "world_size": comm.size, "roles": []}
    loop = Trainer(built, comm, attrs, stop)
    loop.train()
    comm.Barrier()
    return loop


LOGGED = {"strategy/aggregator/log_rows": [0, 1, 2, 3, 4, 7]}
"""State that records the run rather than drives it: compared in its measured-free columns (FedAvg's client log:
round, client, host, n_k, status, loss, in round and client order; not the times nor the arrival order)."""


BOOKKEEPING = ("strategy/server/epochs",)
"""State about how the run was written, not what it computes: where each gather of ps's update log began (a
resumed segment starts a new epoch, so that its entries follow those in the file)."""


def same_state(a: dict, b: dict) -> bool:
    def part(state, k):
        if k not in LOGGED or not state[k].size:
            return state[k]
        rows = state[k][:, LOGGED[k]]
        return rows[np.lexsort((rows[:, 1], rows[:, 0]))]  # by round, then client: hosts report in any order

    return a.keys() == b.keys() and all(equal(part(a, k), part(b, k)) for k in a if k not in BOOKKEEPING)


def equal(x: np.ndarray, y: np.ndarray, close: bool = False) -> bool:
    """Bit for bit (or within LAST_BITS); NaN equal to NaN (a server's loss rows are NaN in both runs)."""
    floating = np.asarray(x).dtype.kind == "f"
    if close and floating:
        return x.shape == y.shape and np.allclose(x, y, rtol=LAST_BITS, atol=LAST_BITS, equal_nan=True)
    return np.array_equal(x, y, equal_nan=floating)


MEASURED = ("fedavg/clients/train_s", "fedavg/clients/upload_s", "fedavg/clients/arrival", "fedavg/peak_rss",
            "freeze/cache_hits", "freeze/cache_bytes")  # fmt: skip
"""Datasets in units other than seconds that are measured all the same (an arrival order, memory; the activation
cache, which a checkpoint does not keep: a resumed run recomputes what it held, and the losses show that this
changes nothing computed)."""


ARRIVAL = ("fedlama/discrepancy",)
"""Sums over the cohort taken in the clients' arrival order: two uninterrupted runs differ in the last bits here
(seen in rows before the stop, at 3 ranks); compared to LAST_BITS."""


def rows_of(path: str) -> dict:
    """Every dataset of the file that the computation decides: not a measured time (units ``s``), nor a timeline
    or a record of the run's segments: losses, accuracies, bytes, counts, the client and update logs."""
    found: dict = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.attrs.get("units") != "s" and name not in MEASURED:
            if not name.startswith(("timeline/", "timing/")) or name == "timing/comm_bytes":
                found[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    if "fedavg/clients/round_number" in found:  # the client log in arrival order: compared by round, then client
        order = np.lexsort((found["fedavg/clients/client"], found["fedavg/clients/round_number"]))
        found |= {k: v[order] for k, v in found.items() if k.startswith("fedavg/clients/")}
    return found


def check_resume_is_the_uninterrupted_run(cfg, tmp, every: int = 7, kept: list | None = None):
    """``kept``: the checkpoint folders expected after the stop (default: not checked)."""
    comm = MPI.COMM_WORLD
    whole = run(dataclasses.replace(cfg, out=f"{tmp}/whole.h5"), StopFlag())
    parted = dataclasses.replace(cfg, out=f"{tmp}/parted.h5", checkpoint_every=every)
    first = run(parted, StopNow())
    stopped_at = first.ctx.done
    folders = sorted(p.name for p in Path(f"{parted.out}.ckpt").glob("row-*"))
    if kept is not None and folders != kept and comm.rank == 0:
        print(f"rank 0: checkpoint folders {folders}, expected {kept}", flush=True)
    resumed = run(dataclasses.replace(parted, resume=True), StopFlag())
    ok = stopped_at == 10 and resumed.ctx.done == ROWS and (kept is None or folders == kept)
    ok &= same_state(*({f"strategy/{k}": v for k, v in t.run.strategy.state_dict().items()} for t in (whole, resumed)))
    if comm.rank == 0:
        a, b = rows_of(f"{tmp}/whole.h5"), rows_of(f"{tmp}/parted.h5")
        differ = sorted(
            k for k in a.keys() | b.keys() if k not in a or k not in b or not equal(a[k], b[k], k in ARRIVAL)
        )
        ok &= not differ
        if differ:
            print(f"rank 0: datasets differ: {differ}", flush=True)  # no assert on one rank: the others would wait
        with h5py.File(f"{tmp}/parted.h5", "r") as f:
            ok &= f.attrs["status"] == "complete" and f["metrics/loss"].shape[1] == ROWS
    return all_agree(ok)


@pytest.mark.parametrize("name", list(LOCKSTEP))
def test_a_resumed_step_run_is_the_run_never_stopped(shared_tmp, name):
    kw = LOCKSTEP[name]
    if kw["strategy"] == "ps" and MPI.COMM_WORLD.size < 2:
        pytest.skip("a server and a worker")
    cfg = make_cfg(shared_tmp, **({"steps": ROWS, "eval_every": 4} | kw))
    assert check_resume_is_the_uninterrupted_run(cfg, shared_tmp), f"{name}: the resumed run differs"


@pytest.mark.parametrize("name", list(FEDERATED))
def test_a_resumed_federated_run_is_the_run_never_stopped(shared_tmp, name):
    if MPI.COMM_WORLD.size < 2:
        pytest.skip("an aggregator and a client rank")
    from .test_fedavg import fed_cfg

    k = 2 * (MPI.COMM_WORLD.size - 1)
    cfg = fed_cfg(
        shared_tmp, **({"rounds": ROWS, "clients": k, "eval_every": 4, "placement": "static"} | FEDERATED[name])
    )
    assert check_resume_is_the_uninterrupted_run(cfg, shared_tmp), f"{name}: the resumed run differs"


def test_incremental_checkpoints_keep_the_folders_back_to_the_last_full_one(shared_tmp):
    """A checkpoint every round (SCAFFOLD, 3 of 12 clients a round): the 1st and the 9th are full, the others hold
    the control variates changed since the one before and name the earlier pieces for the rest; after the stop at
    row 10 the folders of rows 9 and 10 are all that is left, and the run resumed from them is the run never
    stopped, bit for bit (bench/runtime/client_state.py: FULL_EVERY = 8)."""
    if MPI.COMM_WORLD.size != 2:
        pytest.skip("one aggregator and one client host suffice")
    from .test_fedavg import fed_cfg

    algorithm = dict(fl_algorithm="scaffold", clients=12, fraction=0.25, placement="static")
    cfg = fed_cfg(shared_tmp, rounds=ROWS, eval_every=4, **algorithm)
    assert check_resume_is_the_uninterrupted_run(cfg, shared_tmp, every=1, kept=["row-10", "row-9"])


class StopOnFirstWorker(StopFlag):
    """A stop request on one worker after its ``polls``-th check (a decoupled run's other ranks learn of it
    through the servers' replies, as from a real signal on that rank)."""

    def __init__(self, polls: int, here: bool):
        super().__init__()
        self.left, self.here = polls, here

    def poll_file(self, path: str) -> None:
        self.left -= self.here
        if self.here and self.left <= 0:
            self.signal_name = "test stop"


@pytest.mark.parametrize("mode", ["async", "ssp"])
def test_a_resumed_decoupled_run_applies_every_update_once(shared_tmp, mode):
    """ps async and ssp stop by messages, so a resumed run is not bit for bit the uninterrupted one; it must
    continue from a consistent state: every gradient a worker computed is applied exactly once by every server
    (each (server, worker, step) once in the update log, across both segments), the budget of steps x workers
    updates is kept (it ends at the first update past it, as an uninterrupted run: fewer than W more), and ssp's
    staleness bound holds across the resume (a worker ahead at the stop waits for its reply). The oracle: the
    closed-form set of updates the recorded step counts imply."""
    comm = MPI.COMM_WORLD
    if comm.size < 3:
        pytest.skip("a server and two workers")
    servers, steps = 2 if comm.size >= 4 else 1, 20
    workers = range(servers, comm.size)
    cfg = make_cfg(shared_tmp, strategy="ps", ps_mode=mode, staleness=1, servers=servers, steps=steps)
    first = run(cfg, StopOnFirstWorker(6, comm.rank == servers))
    stopped = bool(first.ctx.stopped_by)
    run(dataclasses.replace(cfg, resume=True), StopFlag())
    ok = stopped
    if comm.rank == 0:
        with h5py.File(cfg.out) as f:
            done = f["timing/steps_done"][()]
            log = list(zip(*(f[f"ps/updates/{k}"][()].tolist() for k in ("server", "worker", "step_number"))))
            expected = [(s, w, n) for s in range(servers) for w in workers for n in range(1, done[w] + 1)]
            ok &= sorted(log) == sorted(expected)
            ok &= steps * len(workers) <= done[servers:].sum() < (steps + 1) * len(workers)
            ok &= f.attrs["status"] == "complete" and len(json.loads(f.attrs["segments"])) == 2
            ok &= mode == "async" or f["ps/updates/staleness"][()].max() <= 1
    assert all_agree(ok), f"ps {mode}: the resumed run lost, repeated or over-ran updates"
