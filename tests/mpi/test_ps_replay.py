"""ps async and ssp against a serial oracle: plain SGD in which each gradient is taken at the model version the run
recorded for it (``ps/updates``: worker, step, staleness). If the event server applied anything other than
delayed SGD with exactly those delays (a gradient on the wrong model, a lost or doubled update, a wrong scale),
the final parameters would differ. This is what separates "stale gradients cost accuracy" from a bug."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mpi4py import MPI

from bench.workload import data, models, partition
from bench.workload.loader import PartitionLoader

from .conftest import all_agree
from .test_ring_training import make_cfg, trainer_for

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]


class Worker:
    """One worker's model and batches, as the run had them (same loader, same seed); a gradient at any version."""

    def __init__(self, cfg, ds, part, index):
        self.model = models.build(cfg.model, ds.shape, ds.classes, cfg.seed)
        self.params = [p for layer in models.layers_of(self.model) for p in layer.params]
        self.loader = PartitionLoader(ds.x_train[part], ds.y_train[part], cfg.batch_size, cfg.seed, index, "cpu")
        self.batches = []

    def grad(self, step: int, flat: np.ndarray) -> np.ndarray:
        while len(self.batches) <= step:
            self.batches.append(self.loader.next())
        offset = 0
        for p in self.params:
            p.data.copy_(torch.from_numpy(flat[offset : offset + p.numel()]).view_as(p))
            offset += p.numel()
        self.model.zero_grad(set_to_none=True)
        x, y = self.batches[step]
        F.cross_entropy(self.model(x), y).backward()
        return torch.cat([p.grad.reshape(-1) for p in self.params]).numpy()


def delayed_sgd(cfg, servers: int, size: int, mode: str, updates: list[tuple[int, int, float]]) -> np.ndarray:
    ds = data.load(cfg)
    W = size - servers
    parts = partition.make(cfg.partition, ds.y_train, W, cfg.seed, alpha=cfg.alpha)
    workers = {servers + i: Worker(cfg, ds, parts[i], i) for i in range(W)}
    first = workers[servers]
    versions = [models.flat_parameters(models.layers_of(first.model))]  # versions[v]: after v applied updates

    def apply(g: np.ndarray) -> None:
        p = torch.from_numpy(versions[-1].copy())
        p.add_(torch.from_numpy(g), alpha=-cfg.lr)  # torch SGD without momentum, as the server's optimizer
        versions.append(p.numpy())

    if mode == "async":  # applied one at a time, in the order logged, each scaled 1/W
        for rank, step, stale in updates:
            g = workers[rank].grad(step, versions[len(versions) - 1 - int(stale)])
            apply(g * np.float32(1.0 / W))
        return versions[-1]
    by_clock: dict[int, list[tuple[int, float]]] = {}
    for rank, clock, stale in updates:
        by_clock.setdefault(clock, []).append((rank, stale))
    for clock in sorted(by_clock):  # ssp: clock by clock; clock - staleness = commits the gradient had seen
        grads = [workers[r].grad(clock, versions[clock - int(s)]) for r, s in sorted(by_clock[clock])]
        total = grads[0].copy()
        for g in grads[1:]:
            total += g
        total *= np.float32(1.0 / W)  # a full clock is the mean; a clock not all reached counts each 1/W
        apply(total)
    return versions[-1]


@pytest.mark.parametrize("mode,staleness", [("async", 0), ("ssp", 1), ("ssp", 3)])
def test_decoupled_run_equals_delayed_sgd_with_its_recorded_delays(shared_tmp, mode, staleness):
    comm = MPI.COMM_WORLD
    if comm.size < 3:
        pytest.skip("needs two workers to be out of step")
    torch.set_num_threads(1)
    strategy = dict(strategy="ps", ps_mode="async") if mode == "async" else dict(strategy="ssp", staleness=staleness)
    cfg = make_cfg(shared_tmp, steps=10, straggler=f"{comm.size - 1}:4", servers=1, **strategy)
    trainer = trainer_for(cfg)
    trainer.train()
    ok, why = True, ""
    if comm.rank == 0:
        server = trainer.run.strategy.server
        updates = [(int(r), int(k), float(s)) for r, k, s in server.updates]
        oracle = delayed_sgd(cfg, 1, comm.size, mode, updates)
        stale = max(s for _, _, s in updates)
        ok = np.allclose(server.values, oracle, rtol=1e-4, atol=1e-6) and stale >= 1
        why = f"{mode} s={staleness}: max |diff| {np.abs(server.values - oracle).max():.3g}, max staleness {stale}"
    assert all_agree(ok), why
