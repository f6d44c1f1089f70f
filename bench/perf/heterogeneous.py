"""Heterogeneous clients in the shape of InclusiveFL's table (Liu et al., KDD 2022): 16 strong clients plus 0, 16,
32, 64 weak ones, layer-wise partial training (``--fl-algorithm partial``) against width reduction (``width``, static
HeteroFL), equal rounds, ``--seeds`` seeds each, every run its own ``mpiexec`` job; then the tables of
:mod:`analysis.views.tiers` (mean +- 95 % CI over the seeds) and the goals of issue 32.

    python -m bench.perf.heterogeneous [--ranks 2] [--weak 0,16,32,64] [--seeds 3] [--rounds 30] [--keep DIR]
    python -m bench.perf.heterogeneous --model resnet20 --dataset cifar10 --data-dir DIR   # where CIFAR-10 is

Defaults: cnn on digits, Dirichlet(0.5) over 16 + max(weak) clients (``--partition-over``: a client holds the same
data whatever the number of clients, so weak clients bring more data, as in the seed's experiment), every client in
every round, E = 2, B = 16, lr 0.1 (16 strong clients alone reach about 84 % in 30 rounds). A weak client leaves
cnn's two convolutions untrained (partial training; resnet20: the first conv and 6 residual blocks); width reduction
gives it the width ratio of the same parameter share (``--tier-width`` otherwise: ``--width weak:0.4``). 0 weak
clients is one set of runs: both methods are FedAvg there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from analysis.data.load import load
from analysis.stats.accuracy import final_accuracy
from analysis.views.tiers import backward_vs_strong, tier_costs_table, tier_counts, tiers_table
from bench.perf.runs import add_repeat_options, results_dir, train

FROZEN = {"cnn": "weak:2", "femnist-cnn": "weak:2", "mlp": "weak:2", "resnet20": ""}  # resnet20: the seed's default


def options(args, method: str, weak: int) -> list[str]:
    clients = args.strong + weak
    tiers = f"strong:{args.strong / clients!r},weak:{weak / clients!r}" if weak else "strong:1"
    out = ["--fl-algorithm", method, "--clients", str(clients), "--client-tiers", tiers]
    frozen = FROZEN.get(args.model, "weak:1")
    if weak and frozen:
        out += ["--tier-frozen", frozen]
    if weak and method == "width" and args.width:
        out += ["--tier-width", args.width]
    return out


def run(args, name: str, opts: list[str], seed: int, work: Path) -> Path:
    cmd = ["--strategy", "fedavg", "--model", args.model, "--dataset", args.dataset, "--partition", "dirichlet"]
    cmd += ["--alpha", str(args.alpha), "--partition-over", str(args.strong + max(args.weak)), "--fraction", "1"]
    cmd += ["--rounds", str(args.rounds), "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
    cmd += ["--local-epochs", str(args.local_epochs), "--eval-every", "0", "--seed", str(seed)]
    cmd += (["--data-dir", args.data_dir] if args.data_dir else []) + opts
    return train(args.ranks, cmd, work / f"{name}_s{seed}.h5")


def goals(runs, weak_counts: list[int]) -> list[str]:
    """Issue 32's goals on the runs: the weak tier's backward time against its capacity + 10 points (capacity: the
    share of parameters it trains); partial training improving with more weak clients; partial above width
    reduction at the most weak clients."""
    by = {}
    for r in runs:
        by.setdefault((str(r.config.get("fl_algorithm")), tier_counts(r)[2]), []).append(r)
    lines = []
    for w in weak_counts[1:]:
        for r in by.get(("partial", w), [])[:1]:
            numel = np.asarray(r.data["layers/numel"], dtype=np.float64)
            capacity = numel[int(r.attrs["client_tiers"]["weak"]["frozen_layers"]) :].sum() / numel.sum()
            share = np.mean([backward_vs_strong(x, 2) for x in by[("partial", w)]])
            verdict = "met" if share <= capacity + 0.10 else "NOT met"
            lines.append(f"{w} weak: weak backward {100 * share:.1f} % of strong; capacity {100 * capacity:.1f} % "
                         f"of the parameters (+ 10 points): {verdict}")  # fmt: skip
    mean = {k: np.mean([final_accuracy(r) for r in v]) for k, v in by.items()}
    partial = [mean.get(("partial", w), mean.get(("width", w))) for w in weak_counts]
    rising = all(b > a for a, b in zip(partial, partial[1:]))
    lines.append(f"partial training's accuracy rises with every step in weak clients: {'met' if rising else 'NOT met'}"
                 f" ({', '.join(f'{100 * a:.2f}' for a in partial)} %)")  # fmt: skip
    most = weak_counts[-1]
    if ("partial", most) in mean and ("width", most) in mean:
        above = mean[("partial", most)] > mean[("width", most)]
        lines.append(f"partial above width reduction at {most} weak: {'met' if above else 'NOT met'} "
                     f"({100 * mean[('partial', most)]:.2f} against {100 * mean[('width', most)]:.2f} %)")  # fmt: skip
    return lines


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2, help="an aggregator and client hosts (default 2: one host)")
    p.add_argument("--model", default="cnn")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default="")
    p.add_argument("--strong", type=int, default=16)
    p.add_argument("--weak", type=lambda s: sorted(int(w) for w in s.split(",")), default=[0, 16, 32, 64])
    p.add_argument("--methods", type=lambda s: s.split(","), default=["partial", "width"])
    p.add_argument("--width", default="", help="--tier-width for width reduction (default: the parameter share's)")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--local-epochs", type=int, default=2)
    add_repeat_options(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    with results_dir(args.keep) as work:
        files = []
        for weak in args.weak:
            for method in args.methods if weak else args.methods[:1]:
                for seed in range(args.seeds):
                    name = f"{method}{args.width.replace(':', '') if method == 'width' else ''}_w{weak}"
                    files.append(run(args, name, options(args, method, weak), seed, work))
                    print(f"  ran {method} with {weak} weak, seed {seed}", flush=True)
        runs = [load(f) for f in files]
        print(tiers_table(runs).markdown())
        print(tier_costs_table(runs).markdown())
        print("\n".join(["Goals (issue 32):", *goals(runs, args.weak)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
