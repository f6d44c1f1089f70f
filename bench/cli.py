"""Command line of ``python -m bench``: ``train``, ``micro``, ``overhead`` and ``info``.

The ``train`` options are generated from :data:`bench.config.FIELDS`, so ``--help`` lists every option with
its default and can never drift from the config stored in results files. Under ``mpiexec`` every rank parses
the same arguments; only rank 0 prints help, and parse errors become :class:`UsageError` so that they are
reported once.
"""

from __future__ import annotations

import argparse
import sys

from bench.config import FIELDS, build, load_toml
from bench.runtime.errors import UsageError
from bench.strategies import taking


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that prints only on rank 0 and raises instead of exiting on errors."""

    rank = 0

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")

    def _print_message(self, message, file=None):
        if _Parser.rank == 0 and message:
            (file or sys.stdout).write(message)


def _size(text: str) -> int:
    """A message size for argparse (K, M, G are 1024-based: bench.micro.sizes)."""
    from bench.micro.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, f in FIELDS.items():
        meta = f.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(f"{meta['group']} options"))
        flag = "--" + name.replace("_", "-")
        default = f.default if f.default != "" else "none"
        where = f"; for {', '.join(taking(meta['applies']))}" if meta["applies"] else ""
        help_text = f"{meta['help']} (default: {default}{where})".replace("%", "%%")
        if meta["hidden"]:
            help_text = argparse.SUPPRESS
        metavar = "{" + ",".join(meta["choices"]) + "}" if meta["choices"] else name.upper()
        if isinstance(f.default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, type=type(f.default), default=None, metavar=metavar, help=help_text)


def make_parser(rank: int = 0) -> argparse.ArgumentParser:
    _Parser.rank = rank
    parser = _Parser(
        prog="python -m bench",
        description="syncbench: time compute against communication for five ways of keeping replicas in step.",
        epilog="Launch under MPI, e.g. mpiexec -n 8 python -m bench train --strategy ring",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train a model with one strategy and write a results file")
    train.add_argument("--config", default="", help="TOML file of options; command-line options override it")
    _add_config_options(train)

    sub.add_parser(  # listed for --help; `python -m bench sweep` is dispatched before MPI starts (bench/__main__.py)
        "sweep", help="expand a sweep spec (TOML) into runs and launch them, or write Slurm job arrays (no mpiexec)"
    )
    _add_micro_options(sub.add_parser("micro", help="point-to-point and all-reduce microbenchmarks"))
    _add_overhead_options(sub.add_parser("overhead", help="measure the cost of per-layer timing hooks on one rank"))
    info = sub.add_parser("info", help="print MPI library, ranks, cores, threads per rank and versions")
    info.add_argument("--model", default="", help="instead: list this model's layers (the units of timing and "
                      "communication; --tier-frozen N and --freeze fixed:K count them from the first), with "
                      "their parameters, bytes and stage (--freeze-cache keeps the output of stages frozen "
                      "whole)")  # fmt: skip
    info.add_argument("--shape", default="1x8x8", help="--model: the sample shape CxHxW (default: digits' 1x8x8; "
                      "CIFAR-10: 3x32x32; lstm: 1x1x80)")  # fmt: skip
    info.add_argument("--classes", type=int, default=10, help="--model: the number of classes (default: 10)")
    return parser


def _add_micro_options(micro: argparse.ArgumentParser) -> None:
    """``micro``: which benchmark and implementations, the message sizes (OSU's -b/-e/-m/-f), the iterations."""
    micro.add_argument(
        "--op",
        default="allreduce",
        choices=(
            "allreduce",
            "ring",
            "naive",
            "latency",
            "links",
            "bw",
            "ps-pushpull",
            "fedavg-round",
            "allgather",
            "reduce-scatter",
            "broadcast",
        ),  # fmt: skip
        help="benchmark (default: allreduce; ring / naive = allreduce of that kernel beside MPI's)",
    )
    micro.add_argument(
        "--impl",
        default="",
        help="implementations to compare, e.g. ours,mpi,gloo (allreduce: ours naive mpi gloo pickle hd; "
        "fedavg-round, allgather, reduce-scatter, broadcast: ours mpi; default: allreduce ours,naive,mpi, other ops "
        "all)",
    )
    micro.add_argument("--pickle", action="store_true", help="allreduce: add mpi4py's pickled lowercase allreduce")
    micro.add_argument(
        "--compress",
        default="none",
        help="allreduce: compress the buffer as train --compress does (fp16, bf16, topk:R, randk:R, qsgd:S, sign; "
        "implementations ours,mpi,dense (dense: our float32 ring, uncompressed); time includes compressing; "
        "default: none)",
    )
    micro.add_argument("--min", "-b", type=_size, default=8, help="smallest message: bytes, or 64K, 1M (default: 8)")
    micro.add_argument("--max", "-e", type=_size, default=1 << 20, help="largest message (default: 1M = 1048576)")
    micro.add_argument(
        "-m", "--message-sizes", default="", metavar="MIN:MAX", help="both at once, as OSU's -m (e.g. 8:4M)"
    )
    micro.add_argument(
        "-f", "--step-factor", type=int, default=2, help="each size this many times the one before (default: 2)"
    )
    micro.add_argument(
        "--full", action="store_true", help="also min, avg and max us and the iterations per size (OSU's -f)"
    )
    micro.add_argument("--iters", type=int, default=50, help="timed iterations at small sizes (default: 50)")
    micro.add_argument("--min-iters", type=int, default=5, help="timed iterations at least, any size (default: 5)")
    micro.add_argument("--warmup", type=int, default=5, help="discarded iterations before timing (default: 5)")
    micro.add_argument("--out", default="", help="also write samples to this HDF5 file (default: none)")
    _add_micro_link_options(micro)


def _add_micro_link_options(micro: argparse.ArgumentParser) -> None:
    """``micro``: where the ranks are (links) and how a round trip is timed (latency, links)."""
    micro.add_argument(
        "--ranks-per-node", type=int, default=0, help="links: virtual nodes of K consecutive ranks (0: the real nodes)"
    )
    micro.add_argument(
        "--emulate-link", default="", help="links: pace messages between nodes as train --emulate-link LATENCY_US,GBPS"
    )
    micro.add_argument(
        "--latency-method",
        choices=("osu", "barrier"),
        default="osu",
        help="latency, links: osu = round trips back to back, timed on rank 0 (osu_latency's method, comparable with "
        "published OSU numbers); barrier = each round trip after a barrier, slowest rank (counts barrier skew)",
    )


def _add_overhead_options(over: argparse.ArgumentParser) -> None:
    over.add_argument(
        "--model", default="cnn", choices=FIELDS["model"].metadata["choices"], help="model (default: cnn)"
    )
    over.add_argument(
        "--dataset", default="digits", choices=FIELDS["dataset"].metadata["choices"], help="(default: digits)"
    )
    over.add_argument("--batch-size", type=int, default=32, help="mini-batch (default: 32)")
    over.add_argument("--steps", type=int, default=40, help="steps per variant, interleaved (default: 40)")
    over.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")


def parse(argv: list[str], rank: int = 0):
    """Parse ``argv``; for ``train`` also resolve the config (TOML, then command line) into ``args.config``."""
    args = make_parser(rank).parse_args(argv)
    if args.command == "train":
        values = load_toml(args.config) if args.config else {}
        values.update({k: v for k, v in vars(args).items() if k in FIELDS and v is not None})
        args.cfg = build(values)
    for name in ("min", "max", "iters", "min_iters", "steps", "batch_size"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    return args
