"""``python -m bench overhead``: what the per-layer timing hooks cost, measured on one rank.

The same model takes steps (forward, backward, SGD update) in alternating blocks with the timing attached (the
driver's :class:`LayerTimer` writing each step's per-layer rows into a :class:`Recorder`, as in training) and
with it removed, so both variants see the same machine noise; the
result is the ratio of median step times. Other ranks, if launched, stay idle.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from mpi4py import MPI

from bench.config import Config
from bench.measure.recorder import Recorder
from bench.measure.timing import CpuClock, LayerTimer
from bench.run.context import declare_series
from bench.workload import data, models


def measure(model_name: str, dataset: str, batch: int, steps: int, block: int = 5) -> dict:
    cfg = Config(dataset=dataset, model=model_name)
    ds = data.load(cfg)
    model = models.build(model_name, ds.shape, ds.classes, 0)
    layers = models.layers_of(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.from_numpy(ds.x_train[:batch])
    y = torch.from_numpy(ds.y_train[:batch])
    rounds = max(1, steps // block)
    rec = Recorder(MPI.COMM_SELF, rounds * block)
    declare_series(rec, len(layers), trace=False)
    times = {"instrumented": [], "plain": []}
    timer = None

    def one_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        if timer is not None:
            timer.start_backward()
        loss.backward()
        if timer is not None:
            row = len(times["instrumented"])
            timer.collect(rec["timing/forward"][row], rec["timing/backward"][row])
        opt.step()

    for _ in range(3):  # burn-in, not measured
        one_step()
    for r in range(2 * rounds):
        variant = "instrumented" if r % 2 == 0 else "plain"
        timer = LayerTimer(layers, CpuClock(), root=model) if variant == "instrumented" else None
        for _ in range(block):
            t = time.perf_counter()
            one_step()
            times[variant].append(time.perf_counter() - t)
        if timer is not None:
            timer.remove()
            timer = None
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "model": model_name,
        "layers": len(layers),
        "steps_each": len(times["plain"]),
        "plain_s": med["plain"],
        "instrumented_s": med["instrumented"],
        "overhead": med["instrumented"] / med["plain"] - 1.0,
    }


def overhead(args, comm) -> int:
    if comm.rank != 0:
        return 0
    torch.set_num_threads(args.threads)
    r = measure(args.model, args.dataset, args.batch_size, args.steps)
    print(
        f"hook overhead, {r['model']} ({r['layers']} layers), batch {args.batch_size}, {args.threads} thread(s), "
        f"{r['steps_each']} steps each, interleaved:"
    )
    print(f"  plain step        {r['plain_s'] * 1e3:8.3f} ms (median)")
    print(f"  instrumented step {r['instrumented_s'] * 1e3:8.3f} ms (median)")
    print(f"  overhead          {100 * r['overhead']:+8.2f} %")
    return 0
