"""Results writing at cluster scale: the appending writer (schema 2 on) against the whole-file rewrite it replaced.

    python -m bench.perf.io                                  # 256 ranks x 60 layers, S = 500, 2000, 10000
    python -m bench.perf.io --steps 500 2000 --old-max 2000  # the old writer only where its memory allows
    python -m bench.perf.io --decoupled-ranks 16             # also the decoupled path (per-rank files)
    python -m bench.perf.io --report 2000                    # also time `analysis tables` on the S = 2000 file
    python -m bench.perf.io --control                        # also the largest S's volume in fresh S = 500 files

Drives the real writers with synthetic rows shaped as a run records them: per rank and step, 4 per-layer timing
series and the per-layer byte counts, and 6 per-step series, flushed every 50 steps. "old" replays what rank 0 did
before issue 14: it keeps (ranks x steps x layers) arrays for the whole run and rewrites the whole file (one-shot
writer, temporary file and rename) at every flush; "new" appends the flush's rows (:mod:`bench.measure.appender`).
Prints, for each, the median seconds of the last 10 flushes (what a flush costs late in the run), the total write
seconds, and rank 0's peak traced memory (tracemalloc: numpy's arrays included) over the bytes of one flush's rows.
The decoupled path: old = every rank rewrites its whole snapshot and rank 0 reassembles and rewrites the file;
new = every rank appends to its row file and rank 0 copies the new rows.
Goals (issue 14): new per-flush time at S = 10,000 within 1.2x of S = 500; rank-0 memory below 2x one flush's rows;
total write time at S = 10,000 at least 20x lower than old (old at 10,000: extrapolated from its growth when it
does not fit in memory, and said so).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from bench.measure import results, snapshots
from bench.measure.appender import Appender
from bench.measure.recorder import Recorder

LAYER_SERIES = ("timing/forward", "timing/backward", "timing/comm", "timing/pack")
STEP_SERIES = ("timing/step", "timing/wait", "timing/data", "timing/optimizer", "timing/injected", "metrics/loss")
FLUSH = 50


def synthetic_rows(rng, ranks: int, rows: int, layers: int) -> dict:
    """One flush's rows, as the Recorder gathers them: name -> ((ranks, rows, ...) block, units)."""
    out = {name: (rng.random((ranks, rows, layers)) * 1e-3, "s") for name in LAYER_SERIES}
    out["timing/comm_bytes"] = (np.full((ranks, rows, layers), 4096, dtype=np.int64), "bytes")
    out |= {name: (rng.random((ranks, rows)), "s" if name.startswith("timing") else "1") for name in STEP_SERIES}
    return out


def static(ranks: int, layers: int, steps: int) -> dict:
    return {
        "layers/name": (np.array([f"layer{i}" for i in range(layers)]), "1"),
        "timing/steps_done": (np.full(ranks, steps, dtype=np.int64), "steps"),
    }


ATTRS = {"strategy": "ring", "config": {"steps": 0}, "status": "running"}


def old_writer(path: str, ranks: int, layers: int, steps: int) -> list[float]:
    """Rank 0 before issue 14: whole-run arrays, the whole file rewritten at each flush."""
    rng = np.random.default_rng(0)
    full = {
        name: np.zeros((ranks, steps, *b.shape[2:]), b.dtype)
        for name, (b, _) in synthetic_rows(rng, ranks, 1, layers).items()
    }
    times = []
    for lo in range(0, steps, FLUSH):
        rows = synthetic_rows(rng, ranks, FLUSH, layers)
        tracemalloc.reset_peak()
        t = time.perf_counter()
        for name, (block, _) in rows.items():
            full[name][:, lo : lo + FLUSH] = block
        done = {name: (arr[:, : lo + FLUSH], rows[name][1]) for name, arr in full.items()}
        results.write(path, ATTRS | {"world_size": ranks}, done | static(ranks, layers, lo + FLUSH), schema=1)
        times.append(time.perf_counter() - t)
        PEAKS.append(tracemalloc.get_traced_memory()[1])
    return times


def new_writer(path: str, ranks: int, layers: int, steps: int, compression: str = "none") -> list[float]:
    rng = np.random.default_rng(0)
    app = Appender(path, ranks, "step", FLUSH, compression)
    times = []
    for lo in range(0, steps, FLUSH):
        rows = synthetic_rows(rng, ranks, FLUSH, layers)
        tracemalloc.reset_peak()
        t = time.perf_counter()
        app.write(ATTRS | {"world_size": ranks}, rows, lo, static(ranks, layers, lo + FLUSH))
        times.append(time.perf_counter() - t)
        PEAKS.append(tracemalloc.get_traced_memory()[1])
    app.close()
    return times


PEAKS: list[int] = []  # traced bytes at their peak during each flush (the flush's rows, held, included)


def measured(fn, *args) -> tuple[list[float], int]:
    """(per-flush seconds, peak traced bytes during a flush) of one writer run: what rank 0 holds for results
    while it writes (the rows of the flush included; making the synthetic rows is not counted)."""
    PEAKS.clear()
    tracemalloc.start()
    times = fn(*args)
    tracemalloc.stop()
    return times, max(PEAKS)


def flush_bytes(ranks: int, layers: int) -> int:
    return sum(b.nbytes for b, _ in synthetic_rows(np.random.default_rng(0), ranks, FLUSH, layers).values())


def compare(ranks: int, layers: int, steps_list: list[int], old_max: int, folder: Path) -> dict:
    one = flush_bytes(ranks, layers)
    print(f"\n{ranks} ranks x {layers} layers, a flush every {FLUSH} steps ({one / 2**20:.1f} MiB of rows per flush)")
    print(
        f"  {'S':>6s} {'writer':6s} {'flush s (last 10)':>18s} {'total write s':>14s} {'peak MiB':>9s} {'/ flush':>8s}"
    )
    seen = {}
    for steps in steps_list:
        for name, fn in (("old", old_writer), ("new", new_writer)):
            if name == "old" and steps > old_max:
                print(
                    f"  {steps:6d} {name:6s} {'(not run: whole-run arrays of ' + _gib(ranks, layers, steps) + ')':>52s}"
                )
                continue
            times, peak = measured(fn, str(folder / f"{name}_{steps}.h5"), ranks, layers, steps)
            last = statistics.median(times[-10:])
            seen[(name, steps)] = (last, sum(times), peak)
            print(f"  {steps:6d} {name:6s} {last:18.4f} {sum(times):14.2f} {peak / 2**20:9.1f} {peak / one:8.2f}")
    return seen


def control(ranks: int, layers: int, steps: int, short: int, folder: Path) -> float:
    """The same volume as one ``steps``-row file, written as fresh ``short``-row files (all kept until the end):
    median of the last 10 flushes of the last file. On this VM a flush slows as the data written grows (memory
    taken by page cache or tmpfs, whatever file it is in: measured), so this separates the file's length from
    the machine's state."""
    times = []
    for i in range(steps // short):
        times = new_writer(str(folder / f"control_{i}.h5"), ranks, layers, short)
    for i in range(steps // short):
        (folder / f"control_{i}.h5").unlink()
    return statistics.median(times[-10:])


def _gib(ranks: int, layers: int, steps: int) -> str:
    return f"{flush_bytes(ranks, layers) * steps / FLUSH / 2**30:.1f} GiB"


def decoupled(ranks: int, layers: int, steps: int, folder: Path) -> None:
    """Per-flush seconds of the decoupled path, summed over the ranks' and rank 0's work, old vs new."""
    rng = np.random.default_rng(0)
    recs = []
    for _ in range(ranks):
        rec = Recorder(_SelfComm(), steps)
        for name, (block, units) in synthetic_rows(rng, 1, 1, layers).items():
            rec.add(name, units, block.shape[2:], block.dtype)
        for s in rec.series.values():
            s.local[...] = rng.random(s.local.shape) if s.local.dtype.kind == "f" else 4096
        recs.append(rec)
    out = str(folder / "decoupled.h5")
    old, new = [], []
    for done in range(FLUSH, steps + 1, FLUSH):
        t = time.perf_counter()
        for r, rec in enumerate(recs):  # old: every rank rewrote its whole snapshot, rank 0 reassembled all
            np.savez(f"{out}.old{r}.npz", **{n: s.local[:done] for n, s in rec.series.items()})
        full = {n: np.stack([np.load(f"{out}.old{r}.npz")[n] for r in range(ranks)]) for n in recs[0].series}
        results.write(out + ".old", ATTRS | {"world_size": ranks}, {n: (a, "s") for n, a in full.items()}, schema=1)
        old.append(time.perf_counter() - t)
    writers = [snapshots.RankRows(out, r, FLUSH) for r in range(1, ranks)]
    collector, app = snapshots.RowCollector(out, ranks), Appender(out, ranks, "step", FLUSH)
    for done in range(FLUSH, steps + 1, FLUSH):
        t = time.perf_counter()
        for w, rec in zip(writers, recs[1:]):
            w.append(rec, done)
            w.close()  # (one process plays every rank here; HDF5 opens a file one way per process)
        collector.collect(recs[0], done, app)
        new.append(time.perf_counter() - t)
    app.close()
    print(
        f"\ndecoupled path, {ranks} ranks x {layers} layers, S = {steps} (all ranks' and rank 0's writing, per flush):"
    )
    print(f"  old: last 10 flushes median {statistics.median(old[-10:]):.4f} s, total {sum(old):.2f} s")
    print(f"  new: last 10 flushes median {statistics.median(new[-10:]):.4f} s, total {sum(new):.2f} s")


class _SelfComm:
    """The Recorder asks its communicator only for rank and size here."""

    rank, size = 0, 1


def time_report(path: Path) -> None:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "analysis", "tables", str(path)], capture_output=True, text=True)
    print(
        f"\n`python -m analysis tables` on {path.name} ({path.stat().st_size / 2**20:.0f} MiB): "
        f"{time.perf_counter() - t:.1f} s, exit {proc.returncode}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=256)
    p.add_argument("--layers", type=int, default=60)
    p.add_argument("--steps", type=int, nargs="+", default=[500, 2000, 10000])
    p.add_argument("--old-max", type=int, default=2000, help="run the old writer up to this many steps")
    p.add_argument("--decoupled-ranks", type=int, default=0, help="also the decoupled path with this many ranks")
    p.add_argument("--report", type=int, default=0, help="also time the analysis tables on the new file of this S")
    p.add_argument("--control", action="store_true", help="also the same volume in fresh short files (see control)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seen = compare(args.ranks, args.layers, args.steps, args.old_max, folder)
        for name in list(folder.glob("*_*.h5")):
            if name.name != f"new_{args.report}.h5":
                name.unlink()
        same = control(args.ranks, args.layers, max(args.steps), min(args.steps), folder) if args.control else None
        _verdict(seen, args.steps, same)
        for steps in sorted(set(args.steps))[:2] if args.decoupled_ranks else ():
            decoupled(args.decoupled_ranks, args.layers, steps, folder)
        if args.report:
            time_report(folder / f"new_{args.report}.h5")
    return 0


def _verdict(seen: dict, steps: list[int], same_volume: float | None) -> None:
    lo, hi = min(steps), max(steps)
    if ("new", lo) in seen and ("new", hi) in seen:
        ratio = seen[("new", hi)][0] / seen[("new", lo)][0]
        print(f"\n  new per-flush at S = {hi} / at S = {lo}: {ratio:.2f} (goal <= 1.2)")
    if same_volume and ("new", hi) in seen:
        print(
            f"  control: the same volume as {hi} rows in fresh {lo}-row files, last flushes {same_volume:.4f} s; "
            f"S = {hi} / control: {seen[('new', hi)][0] / same_volume:.2f}"
        )
    old_hi = max((s for (n, s) in seen if n == "old"), default=None)
    if old_hi and ("new", hi) in seen:
        old_total = seen[("old", old_hi)][1] * (hi / old_hi) ** 2  # rewrite cost grows with S: total with S^2
        how = "measured" if old_hi == hi else f"extrapolated as S^2 from S = {old_hi}"
        print(
            f"  old total at S = {hi} ({how}): {old_total:.1f} s; new {seen[('new', hi)][1]:.1f} s: "
            f"{old_total / seen[('new', hi)][1]:.0f}x lower (goal >= 20x)"
        )


if __name__ == "__main__":
    sys.exit(main())
