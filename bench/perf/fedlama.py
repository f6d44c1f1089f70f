"""FedLAMA against FedAvg at equal local steps, in the shape of the paper's Table 1 (Lee et al. 2023), at a size this
machine runs: FedAvg(T) for R rounds, FedAvg(2T) for R / 2 rounds, FedLAMA(T, PHI) for R rounds, each over
``--seeds`` seeds, each its own ``mpiexec`` job, one after another; then the table of
:mod:`analysis.views.fedlama` (mean +- 95 % CI over the seeds), as ``python -m analysis report`` prints it.

    python -m bench.perf.fedlama [--ranks 3] [--clients 64] [--rounds 40] [--local-steps 10] [--phi 2] [--keep DIR]

Defaults: cnn on digits, 64 clients (digits' 1437 training samples cannot give 128 clients a Dirichlet(0.1)
partition with a sample each), 25 % sampled per round, Dirichlet 0.1, batch 16. Goal (issue 17): FedLAMA(T, 2)
within 1.5 accuracy points of FedAvg(T) at <= 70 % of its communication, and above FedAvg(2T).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.data.load import load
from analysis.views.fedlama import fedlama_table
from bench.perf.runs import add_repeat_options, results_dir, train

WORKLOAD = ["--strategy", "fedavg", "--model", "cnn", "--dataset", "digits", "--partition", "dirichlet"]


def variants(rounds: int, steps: int, phi: int) -> dict[str, list[str]]:
    """name: options; equal local steps in all (rounds x T)."""
    return {
        f"fedavg_T{steps}": ["--local-steps", str(steps), "--rounds", str(rounds)],
        f"fedavg_T{2 * steps}": ["--local-steps", str(2 * steps), "--rounds", str(rounds // 2)],
        f"fedlama_T{steps}_phi{phi}": [
            *("--local-steps", str(steps), "--rounds", str(rounds)),
            *("--fl-algorithm", "fedlama", "--fedlama-phi", str(phi)),
        ],
    }


def run(args, name: str, options: list[str], seed: int, work: Path) -> Path:
    cmd = [*WORKLOAD, *options, "--clients", str(args.clients), "--fraction", str(args.fraction)]
    cmd += ["--alpha", str(args.alpha), "--batch-size", str(args.batch_size), "--eval-every", str(args.eval_every)]
    return train(args.ranks, [*cmd, "--seed", str(seed)], work / f"{name}_s{seed}.h5")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=3)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--fraction", type=float, default=0.25)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=40, help="rounds of FedAvg(T) and FedLAMA (FedAvg(2T): half)")
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--phi", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=10)
    add_repeat_options(p)
    args = p.parse_args(argv)
    with results_dir(args.keep) as work:
        files = []
        for name, options in variants(args.rounds, args.local_steps, args.phi).items():
            for seed in range(args.seeds):
                files.append(run(args, name, options, seed, work))
                print(f"  ran {name} seed {seed}", flush=True)
        table = fedlama_table([load(f) for f in files])
        print(table.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
