"""The short summary printed by rank 0 at the end of a run: throughput and where step time went.

Shares are of the step time summed over steps after the first (mean over computing ranks; the first step pays
one-time costs: allocator warm-up, lazy initialisation), so they add up to 100% with "other" holding what no
phase claims (activations outside layers, loss, zero_grad, Python overhead). The phases and both ratios are
defined once, in :mod:`analysis.stats.metrics`, which the report uses too.
"""

from __future__ import annotations

import numpy as np

from analysis.data.load import load
from analysis.stats.metrics import (
    across_share,
    across_time_share,
    comm_to_compute,
    computing_ranks,
    oversubscription,
    phase_totals,
    step_stats,
)

LABELS = {
    "comm": "communication",
    "pack": "packing",
    "exposed": "communication not overlapped",
    "compress": "compression",
}


def print_summary(run, evals, wall, status: str, stopped_by: str, attrs: dict, per_worker=None) -> None:
    """``wall``: seconds of the training loop without evaluation and results writing. Throughput and the median
    step are :func:`analysis.stats.metrics.step_stats` of the file, as every table prints them. ``per_worker``: the
    steps each worker took, where they
    differ (async, ssp: ``--steps`` is a budget of steps x workers, so fast workers take more); the header and the
    step rate then give the mean per worker and the range, not the fastest worker's count. Shares count computing
    ranks only (not servers). The numbers come from the results file just written, read as the analysis reads it."""
    written = load(run.out)
    data = written.data  # per-layer series summed block by block (analysis.stats.metrics.per_row)
    measured = step_stats(written, warmup=1)  # the report's definitions (analysis/README.md)
    ranks = computing_ranks(attrs.get("roles"), int(attrs["world_size"]))
    steps = data["timing/step"].shape[1]
    parts = phase_totals(data, ranks)
    step = data["timing/step"][ranks]
    median = measured.median_s if step.shape[1] > 1 else float(step.max(initial=0.0))
    counted = f"{steps} steps"
    if per_worker:
        steps = float(np.mean(per_worker))
        counted = f"{steps:.1f} steps per worker on average ({min(per_worker)}-{max(per_worker)})"
    print(
        f"syncbench {run.cfg.strategy}: {run.cfg.model} on {run.cfg.dataset}, {attrs['world_size']} ranks, "
        f"{counted} ({status}{', ' + stopped_by if stopped_by else ''})"
    )
    side = attrs.get("eval_and_io_s", 0.0)
    if per_worker:
        how = f"{steps / wall:.2f} steps/s per worker over {wall:.2f} s of training"
    else:
        how = "measured steps after step 1: samples / their time, the slowest rank's per step"
    print(
        f"  throughput      {measured.samples_per_s:10.1f} samples/s  ({how}; {side:.2f} s of evaluation and "
        "file writes left out)"
    )
    print(f"  median step     {median * 1e3:10.2f} ms  (slowest rank per step, after step 1)")
    total = parts["step"] or 1.0
    overlapped = "timing/exposed" in data  # communication ran beside the backward pass (analysis.stats.metrics)
    phases = ("exposed",) if overlapped else ("comm", "pack")
    phases += ("compress",) if "timing/compress" in data else ()
    shares = "  ".join(
        f"{LABELS.get(k, k)} {100 * parts[k] / total:.1f}%"
        for k in ("forward", "backward", *phases, "wait", "optimizer", "data", "injected", "other")
    )
    print(f"  step time split {shares}")
    print(f"  comm share      {100 * parts['comm'] / total:10.1f} %  (communication time / step time)")
    if overlapped and parts["comm"] > 0:
        hidden = 100 * (parts["comm"] - parts["exposed"]) / parts["comm"]
        print(f"  overlap         {hidden:10.1f} %  (communication hidden behind the backward pass / all of it)")
    if parts["forward"] + parts["backward"] > 0:
        print(f"  comm:compute    {comm_to_compute(parts):10.3f}  (communication time / forward+backward time)")
    if evals:
        step, acc, loss = evals[-1]
        print(f"  test accuracy   {100 * acc:10.2f} %  (loss {loss:.4f}, after step {int(step) + 1})")
    _print_nodes(written, attrs)
    print_freezing(data)
    _print_allreduce_choice(attrs.get("strategy_info") or {})
    _print_staging(attrs.get("strategy_info") or {}, attrs.get("config", {}).get("device", "cpu"))
    over, per_host = oversubscription(attrs)
    cores = attrs.get("cores_per_host", 0)
    if over:
        print(
            f"  note            {per_host} ranks x {attrs.get('threads_per_rank', 1)} thread(s) share {cores} cores "
            "on a host: oversubscribed, so times include waiting for a core"
        )
    print(f"  results         {run.out}")


def print_freezing(data) -> None:
    """With ``--freeze``: how many layers were frozen at the end, from which step, and what that did to the bytes
    all ranks sent per step (the first step that sent against the last that did: localsgd sends only when it
    averages); with ``--freeze-cache``, the samples it served and the memory it held."""
    if "freeze/frozen_layers" not in data:
        return
    frozen = np.asarray(data["freeze/frozen_layers"])[0]
    layers = np.asarray(data["timing/comm_bytes"]).shape[-1]
    if not frozen.size or frozen[-1] == 0:
        print("  freezing        no layer frozen (the run ended before a freeze point, or no decision grew the prefix)")
        return
    first = int(np.argmax(frozen > 0)) + 1
    sent = np.asarray(data["timing/comm_bytes"]).sum(axis=(0, 2)) / 2**20
    sending = np.flatnonzero(sent > 0)
    bytes_part = ""
    if sending.size:
        a, b = sending[0], sending[-1]
        bytes_part = (f" (MiB sent per step, all ranks: {sent[a]:.3f} at step {a + 1}, {sent[b]:.3f} at step "
                      f"{b + 1})")  # fmt: skip
    print(f"  freezing        {int(frozen[-1])} of {layers} layers frozen at the end, the first from step {first}"
          f"{bytes_part}")  # fmt: skip
    if "freeze/cache_hits" in data:
        hits, held = np.asarray(data["freeze/cache_hits"]), np.asarray(data["freeze/cache_bytes"])
        print(f"  freeze cache    {int(hits.sum())} samples' prefix output reused, all ranks ({int(hits[:, -1].sum())} "
              f"in the last step); {held[:, -1].max() / 2**20:.2f} MiB held at the end on the rank that held "
              "most")  # fmt: skip


def _print_nodes(written, attrs: dict) -> None:
    """Where the run spans nodes (real, or --ranks-per-node): how many, the share of bytes sent across them, and
    the emulated link if there was one."""
    nodes = attrs.get("nodes") or []
    if len(set(nodes)) < 2:
        return
    link = attrs.get("config", {}).get("emulate_link", "")
    emulated = f"; emulated link {link.replace(',', ' us, ')} Gb/s" if link else ""
    share, seconds = across_share(written), across_time_share(written)
    crossed = f"{100 * share:.1f} % of the bytes sent went to other nodes" if share == share else "bytes not counted"
    if seconds == seconds:
        crossed += f", {100 * seconds:.1f} % of the time communicating or waiting was spent exchanging with them"
    print(f"  nodes           {len(set(nodes))} ({crossed}{emulated})")


def _print_staging(info: dict, device: str) -> None:
    """How buffers reached MPI (``--gpu-path``), where there was a choice: on a GPU, or when asked for the device
    path on CPU."""
    staging = info.get("staging")
    if staging is None or (device != "cuda" and staging == "host"):
        return
    how = "MPI reads the device buffers" if staging == "device" else "copied through pinned host buffers"
    if device != "cuda":
        how = "MPI reads the tensors themselves" if staging == "device" else "numpy host buffers"
    aware = f"; CUDA-aware MPI: {info['cuda_aware_mpi']} ({info['cuda_aware_source']})" if device == "cuda" else ""
    print(f"  staging         {staging} ({how}; {info['buckets_in_flight']} buckets in flight{aware})")


def _print_allreduce_choice(info: dict) -> None:
    """``--allreduce auto``: how many buckets took the hierarchical kernel, and the links measured at set-up."""
    chosen = info.get("allreduce_chosen")
    if not chosen:
        return

    def link(measured) -> str:
        alpha, beta = measured[0], measured[1]
        return f"{alpha * 1e6:.1f} us + {beta * 1e9:.3f} ns/B"

    links = info["allreduce_links"]
    took = f"hierarchical for {chosen.count('hierarchical')} of {len(chosen)} buckets"
    print(f"  allreduce auto  {took} (links measured at set-up: inside a node {link(links['inside'])}, across nodes "
          f"{link(links['across'])})")  # fmt: skip
