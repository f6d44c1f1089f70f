"""The short summary printed by rank 0 at the end of a run: throughput and where step time went.

Shares are of the summed step time over all computing ranks and steps after the first (the first step pays
one-time costs: allocator warm-up, lazy initialisation), so they add up to 100% with "other" holding what no
phase claims (activations outside layers, loss, zero_grad, Python overhead).
"""

from __future__ import annotations

import numpy as np

from analysis.metrics import oversubscription


def split(rec_data: dict, warmup: int = 1) -> dict:
    """Seconds per phase summed over ranks and steps ``>= warmup`` (all steps if there are no more)."""
    step = rec_data["timing/step"]
    lo = warmup if step.shape[1] > warmup else 0
    sl = (slice(None), slice(lo, None))
    out = {
        "forward": rec_data["timing/forward"][sl].sum(),
        "backward": rec_data["timing/backward"][sl].sum(),
        "communication": rec_data["timing/comm"][sl].sum(),
        "wait": rec_data["timing/wait"][sl].sum(),
        "optimizer": rec_data["timing/optimizer"][sl].sum(),
        "data": rec_data["timing/data"][sl].sum(),
        "injected": rec_data["timing/injected"][sl].sum(),
    }
    total = step[sl].sum()
    out["other"] = max(0.0, total - sum(out.values()))
    out["step"] = total
    out["median_step"] = float(np.median(step[sl].max(axis=0))) if step[sl].size else 0.0
    return out


def print_summary(run, rec, evals, wall: float, status: str, stopped_by: str, attrs: dict, samples=None) -> None:
    """``wall``: seconds of the training loop without evaluation and results writing. ``samples``: trained in
    all (default: every computing rank took every step). Shares count computing ranks only (not servers)."""
    computing = [i for i, role in enumerate(attrs.get("roles", [])) if role in ("peer", "worker")]
    data = {name: arr[computing] if computing else arr for name, (arr, _) in rec.datasets().items()}
    steps = rec.gathered
    parts = split(data)
    if samples is None:
        samples = steps * run.batch * run.strategy.compute_ranks
    print(
        f"syncbench {run.cfg.strategy}: {run.cfg.model} on {run.cfg.dataset}, {rec.comm.size} ranks, "
        f"{steps} steps ({status}{', ' + stopped_by if stopped_by else ''})"
    )
    side = attrs.get("eval_and_io_s", 0.0)
    print(
        f"  throughput      {samples / wall:10.1f} samples/s  ({steps / wall:.2f} steps/s over {wall:.2f} s of "
        f"training; {side:.2f} s of evaluation and file writes left out)"
    )
    print(f"  median step     {parts['median_step'] * 1e3:10.2f} ms  (slowest rank per step, after step 0)")
    total = parts["step"] or 1.0
    shares = "  ".join(
        f"{k} {100 * parts[k] / total:.1f}%"
        for k in ("forward", "backward", "communication", "wait", "optimizer", "data", "injected", "other")
    )
    print(f"  step time split {shares}")
    compute = parts["forward"] + parts["backward"]
    if compute > 0:
        print(f"  comm/compute    {parts['communication'] / compute:10.3f}  (communication time / forward+backward)")
    if evals:
        step, acc, loss = evals[-1]
        print(f"  test accuracy   {100 * acc:10.2f} %  (loss {loss:.4f}, after step {int(step) + 1})")
    over, per_host = oversubscription(attrs)
    cores = attrs.get("cores_per_host", 0)
    if over:
        print(
            f"  note            {per_host} ranks x {attrs.get('threads_per_rank', 1)} thread(s) share {cores} cores "
            "on a host: oversubscribed, so times include waiting for a core"
        )
    print(f"  results         {run.out}")
