"""The run configuration: one dataclass that is the single source of option names, defaults and help.

The command line (:mod:`bench.cli`) and ``--config file.toml`` are both built from :data:`FIELDS`, and the
resolved config (defaults included) is stored as JSON in every results file, so a run can be repeated from
the file it wrote.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from bench.runtime.errors import UsageError
from bench.strategies import NAMES as STRATEGIES  # the registry, imported without torch or MPI
from bench.strategies import REGISTRY, facts, named_for_mode, taking
from bench.strategies.fedavg.checks import check_federated
from bench.strategies.fedavg.needs import NEEDS as FL_ALGORITHMS  # their names and needs, pure data
from bench.strategies.fedavg.needs import client_placement

PS_MODES = ("sync", "async", "ssp")
MODELS = ("mlp", "cnn", "resnet20", "transformer", "logreg", "femnist-cnn", "lstm")
DATASETS = ("synthetic", "digits", "leaf-synthetic", "mnist", "cifar10", "cifar100", "femnist", "shakespeare")
FILE_DATASETS = ("mnist", "cifar10", "cifar100", "femnist", "shakespeare")  # read from --data-dir
NATURAL_DATASETS = ("leaf-synthetic", "femnist", "shakespeare")  # with natural groups (LEAF users)
PARTITIONS = ("iid", "dirichlet", "shards", "natural")
DEVICES = ("cpu", "cuda")
DEFAULT_EVAL_STEPS, DEFAULT_EVAL_ROUNDS = 50, 5
DEFAULT_LOCALSGD_TAU = 4


FAMILIES = frozenset().union(*(f.takes for f in REGISTRY.values()))
"""Option families some strategy takes (:attr:`bench.strategies.Facts.takes`); an option outside them applies to all."""


def opt(default, help: str, choices=None, group: str = "training", hidden: bool = False, applies: str = ""):
    """A config field with its help text (``choices`` are checked in :func:`validate`). ``applies``: the option
    family it belongs to (default: its group, where a strategy takes the group as a family, else none: every
    strategy takes it); given explicitly to a strategy that does not take the family, it is a usage error."""
    applies = applies or (group if group in FAMILIES else "")
    meta = {"help": help, "choices": choices, "group": group, "hidden": hidden, "applies": applies}
    return field(default=default, metadata=meta)


@dataclass
class Config:
    # --- what to run ---
    strategy: str = opt("ring", "synchronisation strategy", STRATEGIES, "run")
    model: str = opt("cnn", "model to train", MODELS, "run")
    dataset: str = opt(
        "digits", "dataset (mnist, cifar10, cifar100, femnist, shakespeare read files from --data-dir)", DATASETS, "run"
    )
    steps: int = opt(100, "optimizer steps to run (per rank)", group="run", applies="steps")
    out: str = opt(
        "results/{strategy}_{model}_{dataset}_n{ranks}_s{seed}.h5",
        "results file; {strategy} {model} {dataset} {ranks} {job} {seed} are filled in (the seed by default, so "
        "repeated runs do not overwrite each other)",
        group="run",
    )
    seed: int = opt(0, "seed for data, partition, model init and sampling", group="run")
    # --- optimisation ---
    batch_size: int = opt(32, "per-rank mini-batch size (weak scaling: global batch grows with ranks)")
    global_batch_size: int = opt(
        0, "if > 0: global batch split over ranks (strong scaling); overrides --batch-size", applies="steps"
    )
    accumulate_steps: int = opt(
        1,
        "micro-batches per step: the mean gradient of N micro-batches of --batch-size before the exchange and the "
        "update, so a rank's batch per update is N x --batch-size (--global-batch-size: the update's batch over "
        "all ranks, split into N micro-batches on each)",
        applies="accumulation",
    )
    lr: float = opt(0.1, "learning rate (client learning rate for fedavg)")
    momentum: float = opt(0.0, "SGD momentum (also LARS's)")
    weight_decay: float = opt(0.0, "weight decay (L2; LARS's beta, LAMB's lambda; not on biases and norms there)")
    optimizer: str = opt(
        "sgd",
        "local optimizer: sgd, adam, lars (You et al. 2017), lamb (You et al. 2020); lars and lamb take a trust "
        "ratio per parameter tensor (ps/ssp: on the servers, each tensor kept whole on one server)",
        ("sgd", "adam", "lars", "lamb"),
    )
    lr_schedule: str = opt(
        "constant",
        "learning-rate schedule over --steps (fedavg: --rounds): constant, step (x0.1 at 1/2 and 3/4), cosine",
        ("constant", "step", "cosine"),
    )
    lr_warmup_steps: int = opt(
        0, "linear learning-rate warm-up over the first N steps (fedavg: rounds), from lr/N to lr (Goyal et al. 2017)"
    )
    trust_coefficient: float = opt(0.001, "LARS's trust coefficient eta")
    bucket_mb: float = opt(
        0.0,
        "fuse consecutive layers into all-reduce buckets of this many MiB (0: per layer; ddp: DDP's 25 MiB)",
        applies="buckets",
    )
    overlap: bool = opt(
        False,
        "ring: average each bucket's gradients while the rest of the backward pass runs (a communication thread, "
        "buckets in backward order, as DDP); ps (sync): push each layer's gradient as it is ready; records the "
        "exposed part of the communication",
        applies="overlap",
    )
    allreduce: str = opt(
        "flat",
        "how ring and localsgd all-reduce: one ring over all ranks (flat), or node by node (hierarchical: "
        "reduce-scatter inside each node, the chunks across nodes, all-gather inside; nodes from --ranks-per-node "
        "or the machine), or per bucket whichever a two-level cost model prices lower, its two links measured at "
        "set-up (auto)",
        ("flat", "hierarchical", "auto"),
        applies="allreduce",
    )
    buckets_in_flight: int = opt(
        2,
        "ring, localsgd, ps: buckets whose copies between the device and MPI's buffers are under way at once (a "
        "GPU's copy of bucket k+1 to the host while bucket k is reduced); 1: one bucket at a time. On CPU a copy is "
        "done when issued, so it changes nothing; --compress and ps --overlap move one bucket at a time",
        group="system",
        applies="staging",
    )
    gpu_path: str = opt(
        "auto",
        "ring, localsgd, ps: how buffers reach MPI: staged through pinned host memory (host), or handed to MPI on "
        "the device (device: needs a CUDA-aware MPI, taken at your word with a warning where the library says no; "
        "on --device cpu, the tensors themselves instead of numpy copies); auto: device where the MPI library says "
        "it is CUDA-aware, else host",
        ("auto", "host", "device"),
        group="system",
        applies="staging",
    )
    ranks_per_node: int = opt(
        0,
        "declare virtual nodes of K consecutive ranks (an experiment on one host as if on several); 0: the real "
        "nodes (ranks that share memory)",
        group="system",
    )
    emulate_link: str = opt(
        "",
        "LATENCY_US,GBPS: messages between nodes (virtual ones too) take at least this latency + bytes / bandwidth, "
        "each node's outgoing link shared by its ranks (an experiment on one host as if on a slower network)",
        group="system",
        applies="own messages",
    )
    overlap_progress: str = opt(
        "thread",
        "ring --overlap: who moves the buckets' messages: a communication thread (thread), or the training thread "
        "from the gradient hooks, one message step at a time (hooks)",
        ("thread", "hooks"),
        applies="overlap_progress",
    )
    compress: str = opt(
        "none",
        "compress the gradients each rank sends: none, fp16, bf16, topk:R, randk:R (R: fraction kept), qsgd:S "
        "(S levels), sign, powersgd:RANK (not fedavg); ring: gradients; localsgd: the parameters' change since the "
        "last average; ps, ssp: each worker's pushed gradient pieces; fedavg: each client's model delta (not the "
        "results file: that is --compression)",
        applies="compress",
    )
    error_feedback: str = opt(
        "auto",
        "keep what compression dropped and add it to the next step's gradient (auto: on for topk, randk, sign, "
        "powersgd; fedavg: one memory per client on its host, so --placement static)",
        ("auto", "on", "off"),
        applies="compress",
    )
    freeze: str = opt(
        "",
        "ring, localsgd, ddp, ps (sync, fixed only): progressive layer freezing (PipeTransformer's AutoFreeze): "
        "auto:ALPHA freezes, every --freeze-every steps, a prefix of layers up to the active layer with the "
        "smallest gradient norm, growing by at most a share ALPHA of the active layers; fixed:K@STEP freezes the "
        "first K layers after step STEP (localsgd: both after the next average, on the norms averaged over the "
        "ranks). Frozen layers run forward without a graph, take no optimizer step and are not averaged (ps: "
        "neither pushed nor pulled)",
        applies="freeze",
    )
    freeze_every: int = opt(50, "--freeze auto:ALPHA: steps between freeze decisions", applies="freeze")
    freeze_unit: str = opt(
        "layer",
        "--freeze auto:ALPHA: what the rule counts and compares: each layer, or each block of layers (the name up "
        "to its first number: blocks.3.conv1 is in blocks.3; a whole transformer block, as PipeTransformer)",
        ("layer", "block"),
        applies="freeze",
    )
    freeze_cache: bool = opt(
        False,
        "--freeze: keep the frozen leading stages' output per training sample in host memory and reuse it instead "
        "of recomputing it (PipeTransformer's AutoCache); inside the cached stages BatchNorm uses its running "
        "statistics, so that a sample's output does not depend on its batch",
        applies="freeze",
    )
    freeze_cache_mb: float = opt(
        1024.0,
        "--freeze-cache: host memory per rank for kept activations (MiB); samples beyond it are recomputed",
        applies="freeze",
    )
    compress_on: str = opt(
        "auto",
        "ring --compress: compress on the host after copying the gradients there (host), or on the model's device "
        "so that only the payload crosses (device; not powersgd); auto: device on --device cuda",
        ("auto", "host", "device"),
        applies="compress_on",
    )
    overlap_fault_rank: int = opt(
        -1, "testing: this rank launches its overlapped buckets in reversed order", group="testing", hidden=True
    )
    # --- stragglers ---
    straggler: str = opt("", "slow ranks' compute: RANK:FACTOR[,RANK:FACTOR] (e.g. 1:3)", group="stragglers")
    straggler_dist: str = opt("", "random per-step slowdown of every rank: lognormal:SIGMA", group="stragglers")
    # --- localsgd ---
    local_steps: int = opt(
        0,
        "localsgd: local steps (tau) between parameter averages (default 4); fedavg: local SGD steps per client per "
        "round, cycling its data, instead of --local-epochs (default 0: use epochs)",
        group="localsgd",
        applies="local_steps",
    )
    warmup_steps: int = opt(
        0,
        "localsgd: average after every step for the first N steps (post-local SGD; not the learning-rate warm-up, "
        "which is --lr-warmup-steps)",
        group="localsgd",
    )
    outer_momentum: float = opt(0.0, "localsgd: SlowMo outer momentum beta (0: plain averaging)", group="localsgd")
    outer_lr: float = opt(1.0, "localsgd: SlowMo outer learning rate alpha (1: plain averaging)", group="localsgd")
    # --- parameter server ---
    servers: int = opt(
        1,
        "ps/ssp: ranks 0..S-1 are parameter servers, the rest workers",
        group="parameter server",
    )
    ps_mode: str = opt(
        "sync",
        "ps: sync (BSP: apply the mean of all W gradients), async (Downpour: apply each on arrival) or ssp (stale "
        "synchronous parallel, bound --staleness; the same as --strategy ssp)",
        PS_MODES,
        "parameter server",
    )
    staleness: int = opt(
        2,
        "ssp: a worker may be at most this many steps ahead of the slowest (0: BSP)",
        group="parameter server",
        applies="staleness",
    )
    # --- federated averaging ---
    clients: int = opt(16, "fedavg: logical clients K, spread evenly over ranks 1..size-1", group="fedavg")
    fraction: float = opt(0.1, "fedavg: fraction C of the clients sampled each round, in (0, 1]", group="fedavg")
    rounds: int = opt(20, "fedavg: communication rounds", group="fedavg")
    local_epochs: int = opt(
        1,
        "fedavg: local epochs E over the client's data per round (--batch-size B)",
        group="fedavg",
    )
    fedprox_mu: float = opt(0.0, "fedavg: FedProx proximal term mu (0: plain FedAvg)", group="fedavg")
    server_opt: str = opt(
        "avg",
        "fedavg: server update on the averaged model (FedOpt): avg, avgm, adam",
        ("avg", "avgm", "adam"),
        "fedavg",
    )
    server_lr: float = opt(
        1.0, "fedavg: server learning rate eta for avgm/adam; SCAFFOLD's global step", group="fedavg"
    )
    fl_algorithm: str = opt(
        "fedavg",
        "fedavg: the federated algorithm: fedavg (with --fedprox-mu, --server-opt), scaffold (control variates, "
        "option II), fednova (normalized averaging), fedlama (layer-wise aggregation intervals; --local-steps), "
        "feddyn (dynamic regularisation, --feddyn-alpha; Acar et al. 2021), partial (layer-wise partial training at "
        "weaker tiers, --client-tiers; InclusiveFL, Liu et al. 2022), width (width-reduced sub-models at weaker tiers, "
        "static HeteroFL, Diao et al. 2021)",
        tuple(FL_ALGORITHMS),
        "fedavg",
    )
    fedlama_phi: int = opt(
        2, "fedavg: FedLAMA's interval factor PHI (layers are averaged every round or every PHI rounds)", group="fedavg"
    )
    feddyn_alpha: float = opt(
        0.01, "fedavg: FedDyn's regularisation weight alpha (Acar et al. 2021 use 0.1, 0.01, 0.001)", group="fedavg"
    )
    aggregator: str = opt(
        "mean",
        "fedavg: how the cohort's models are combined: mean (weighted, streamed), median, trimmed:BETA, krum:F, "
        "multikrum:F:M (robust rules keep the cohort's models: O(cohort x model) memory)",
        group="fedavg",
    )
    byzantine: str = opt(
        "",
        "fedavg: a share of each round's sampled clients attacks: FRACTION:sign-flip, FRACTION:gaussian:SIGMA, "
        "FRACTION:scale:FACTOR (default: none)",
        group="fedavg",
    )
    selection: str = opt(
        "uniform",
        "fedavg: client selection: uniform (without replacement, weighted by n_k), size (with replacement, "
        "probability n_k / n, plain mean; Li et al. 2020), power-of-choice:D (D candidates by n_k, the m with the "
        "highest local loss kept, plain mean; Cho et al. 2022)",
        group="fedavg",
    )
    server_momentum: float = opt(0.9, "fedavg: server momentum (avgm) / beta1 (adam)", group="fedavg")
    dropout: float = opt(0.0, "fedavg: probability that a sampled client fails to report", group="fedavg")
    deadline: float = opt(
        float("inf"),
        "fedavg: seconds after a round starts; later updates are dropped (late)",
        group="fedavg",
    )
    client_timeout: float = opt(
        0.0,
        "fedavg: seconds the aggregator waits for a round's clients (0: --timeout)",
        group="fedavg",
    )
    on_client_timeout: str = opt(
        "abort",
        "fedavg: clients that do not answer in time: abort the job, or drop them (the round ends without them, "
        "the results so far are written, then the job ends naming their ranks)",
        ("abort", "drop"),
        "fedavg",
    )
    aggregation: str = opt(
        "client",
        "fedavg: who folds the clients' models: the aggregator, one client at a time (client); each client rank "
        "into one partial sum per round (host); the round's client ranks pairwise in a tree before rank 0, inside each "
        "node first, then between node leaders (tree)",
        ("client", "host", "tree"),
        "fedavg",
    )
    placement: str = opt(
        "auto",
        "fedavg: which client rank trains a sampled client: spread every round over the client ranks by local steps "
        "+ samples / B, longest first (balanced), or the rank holding its block (static); auto: static where a "
        "client keeps state on its host (SCAFFOLD's control variate, an error-feedback memory), else balanced",
        ("auto", "balanced", "static"),
        "fedavg",
    )
    upload_buffers: int = opt(
        2,
        "fedavg: a client host sends finished clients' models from this many buffers without waiting for the "
        "aggregator, and trains on (memory: N x model bytes per host); 0: blocking sends",
        group="fedavg",
    )
    client_speed: str = opt(
        "",
        "fedavg: per-client slowdown factors drawn once per client: lognormal:SIGMA",
        group="fedavg",
    )
    client_tiers: str = opt(
        "",
        "fedavg: capacity tiers as shares of the clients, e.g. strong:0.5,weak:0.5 (strong, moderate, weak; a "
        "seeded assignment, recorded); with --fl-algorithm partial a tier leaves its --tier-frozen leading layers "
        "untrained (default: all strong)",
        group="fedavg",
    )
    tier_frozen: str = opt(
        "",
        "fedavg: leading layers (of the model's layer list) each tier does not train, e.g. moderate:14,weak:26 "
        "(resnet20's default: the first conv + 3 or 6 residual blocks, as InclusiveFL; other models need it)",
        group="fedavg",
    )
    tier_speed: str = opt(
        "",
        "fedavg: a tier's compute takes this many times as long, e.g. weak:4 (composes with --client-speed and "
        "counts for --deadline; default 1)",
        group="fedavg",
    )
    partition_over: int = opt(
        0,
        "fedavg: split the data as over N clients and give the run's K clients the first K parts (N >= K), so that "
        "a client holds the same data whatever K and more clients bring more data (0: over K)",
        group="fedavg",
    )
    tier_width: str = opt(
        "",
        "fedavg: --fl-algorithm width: a tier's width ratio r, e.g. moderate:0.65,weak:0.4 (default: sqrt of the "
        "share of parameters its --tier-frozen layers leave to train)",
        group="fedavg",
    )
    # --- data ---
    data_dir: str = opt("", "folder with MNIST idx files or CIFAR-10 binary batches", group="data")
    partition: str = opt("iid", "how training data is split over ranks", PARTITIONS, "data")
    alpha: float = opt(0.5, "Dirichlet concentration for --partition dirichlet (smaller: more skew)", group="data")
    shards_per_part: int = opt(2, "label shards per partition for --partition shards", group="data")
    test_fraction: float = opt(0.2, "held-out fraction for datasets without a test split", group="data")
    synthetic_shape: str = opt("1x16x16", "synthetic sample shape CxHxW, or a single number for flat", group="data")
    synthetic_samples: int = opt(8192, "synthetic dataset size (train + test)", group="data")
    synthetic_classes: int = opt(10, "synthetic number of classes", group="data")
    leaf_alpha: float = opt(1.0, "LEAF synthetic(alpha, beta): model heterogeneity across devices", group="data")
    leaf_beta: float = opt(1.0, "LEAF synthetic(alpha, beta): data heterogeneity across devices", group="data")
    leaf_devices: int = opt(32, "LEAF synthetic: number of devices (natural partitions)", group="data")
    # --- measurement ---
    eval_every: int = opt(
        -1,
        "evaluate test accuracy every N steps (fedavg: rounds) and after the last; 0: only at the end; "
        "default -1: every 50 steps, every 5 rounds for fedavg",
        group="measurement",
    )
    sync_wait: bool = opt(
        True,
        "time a barrier before each step's communication as 'wait' (rank skew), not as communication",
        group="measurement",
        applies="lockstep",
    )
    trace: bool = opt(
        False, "record start times of every phase for timeline/trace export", group="measurement", applies="trace"
    )
    flush_every: int = opt(
        50,
        "append the rows since the last flush to the results file every N steps (rounds), so a killed run keeps them",
        group="measurement",
    )
    compression: str = opt(
        "none", "compress the results file's chunks (lzf: fast; gzip: smaller)", ("none", "lzf", "gzip"), "measurement"
    )
    checkpoint_every: int = opt(
        0,
        "write a checkpoint beside the results file (OUT.ckpt/) every N steps (fedavg: rounds); one is also written "
        "at every stop request (signal or --stop-file); 0: only then (not ps async, ssp)",
        group="checkpoints",
    )
    resume: bool = opt(
        False,
        "continue from the newest checkpoint beside --out into the same results file (rows after the checkpoint "
        "are cut); same options and rank count",
        group="checkpoints",
    )
    stop_file: str = opt(
        "",
        "stop at the next agreed step once this file exists and write results (its text, e.g. SIGUSR1, is "
        "recorded as the reason); the Slurm scripts point it at their time-limit warning",
        group="measurement",
    )
    # --- system ---
    device: str = opt("cpu", "compute device; on cuda, buffers reach MPI as --gpu-path says", DEVICES, "system")
    threads: int = opt(
        0, "torch threads per rank (0: cores on the node / ranks on the node, at least 1)", group="system"
    )
    timeout: float = opt(300.0, "abort the job if a rank waits on peers longer than this many seconds", group="system")
    quiet: bool = opt(False, "no progress bar", group="system")
    fail_rank: int = opt(-1, "testing: make this rank raise an exception ...", group="testing", hidden=True)
    fail_step: int = opt(0, "... at this row (a 0-based index: step 1 is 0)", group="testing", hidden=True)
    fail_mode: str = opt(
        "raise",
        "... by raising, by blocking for ever in a receive, or by being killed (SIGKILL) halfway through writing its "
        "checkpoint piece at that row",
        ("raise", "hang", "kill-in-checkpoint"),
        "testing",
        hidden=True,
    )

    # ---- derived values ---------------------------------------------------------------------------
    def per_rank_batch(self, ranks_computing: int) -> int:
        """Samples one computing rank trains on per step (per update): its share of --global-batch-size, or
        --batch-size x --accumulate-steps."""
        if self.global_batch_size > 0:
            return self.global_batch_size // ranks_computing
        return self.batch_size * self.accumulate_steps

    @property
    def scaling(self) -> str:
        """``strong`` (fixed global batch) or ``weak`` (fixed per-rank batch): the analysis groups by it."""
        return "strong" if self.global_batch_size > 0 else "weak"

    @property
    def evaluation_interval(self) -> int:
        """Steps (rounds for fedavg) between evaluations; 0: only at the end. The default (-1) counts rounds for
        fedavg, which runs tens of rounds, not hundreds of steps (time-to-accuracy needs points along the run)."""
        if self.eval_every >= 0:
            return self.eval_every
        return DEFAULT_EVAL_ROUNDS if facts(self.strategy).rows == "round" else DEFAULT_EVAL_STEPS

    @functools.cached_property
    def freezing(self):
        """``--freeze`` with ``--freeze-every``, parsed (:class:`bench.strategies.freezing.FreezeSpec`)."""
        from bench.strategies.freezing import parse_freeze

        return parse_freeze(self.freeze, self.freeze_every, self.freeze_unit)

    @property
    def exchange_compression(self):
        """``--compress`` with ``--error-feedback``, parsed (:class:`bench.compress.Compression`; a fresh
        compressor per call). Valid after :func:`validate`."""
        from bench.compress import Compression

        return Compression.of(self.compress, self.error_feedback)

    def takes(self, family: str) -> bool:
        """The strategy takes this option family (:attr:`bench.strategies.Facts.takes`)."""
        return family in facts(self.strategy).takes

    @functools.cached_property
    def federated(self):
        """fedavg's ``--aggregator``, ``--byzantine`` and ``--selection``, parsed once
        (:class:`bench.strategies.fedavg.options.Federated`). Valid after :func:`validate`."""
        from bench.strategies.fedavg.options import resolve

        return resolve(self)

    def strategy_attributes(self) -> dict:
        """The root attributes that say what the run's strategy is (results/README.md): its schedule, row unit,
        communication model, computing ranks, whether its gradients overlap the backward pass, and the options
        that apply to it (analysis names and compares runs by those only)."""
        declared = facts(self.strategy)
        return {
            "schedule": self.schedule,
            "row_unit": declared.rows,
            "exchange": declared.exchange,
            "computing": declared.computing,
            "overlapped": bool(declared.overlapped or self.overlap),
            "options": sorted(name for name in FIELDS if self.varies(name)),
        }

    def varies(self, name: str) -> bool:
        """The option applies to this strategy and is not fixed by it (``ssp`` fixes ``--ps-mode``)."""
        family = FIELDS[name].metadata["applies"]
        return (not family or self.takes(family)) and not (name == "ps_mode" and facts(self.strategy).ps_mode)

    @property
    def schedule(self) -> str:
        """``lockstep``, ``decoupled`` or ``rounds``: the strategy's, with ``--ps-mode``."""
        return facts(self.strategy).schedule_for(self.ps_mode)

    @property
    def tau(self) -> int:
        """localsgd's local steps between averages: ``--local-steps``, 4 when not given."""
        return self.local_steps or DEFAULT_LOCALSGD_TAU

    def to_json(self) -> str:
        resolved = {"scaling": self.scaling, "eval_every": self.evaluation_interval}
        if self.takes("localsgd"):
            resolved["local_steps"] = self.tau
        if self.takes("fedavg"):
            resolved["placement"] = client_placement(self)
        return json.dumps(dataclasses.asdict(self) | resolved, sort_keys=True)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def read_toml(path: str, what: str) -> dict:
    """A TOML file as a dict; a missing or malformed file is a usage error naming ``what`` it was for."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{what} {path}: not valid TOML ({exc})") from None


def load_toml(path: str) -> dict:
    """Read ``--config``: keys are option names (``batch_size`` or ``batch-size``), optionally under
    ``[train]``."""
    raw = read_toml(path, "--config")
    raw = raw.get("train", raw)
    values = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise UsageError(f"--config {path}: unknown option '{key}'")
        values[name] = value
    return values


def build(values: dict) -> Config:
    """Make a :class:`Config` from parsed values (TOML first, command line over it) and check it. ``values``
    holds only the options given explicitly; each must apply to the chosen strategy."""
    cfg = Config()
    for name, value in values.items():
        default = FIELDS[name].default
        try:
            value = type(default)(value) if not isinstance(default, bool) else _as_bool(value)
        except (TypeError, ValueError):
            raise UsageError(f"--{name.replace('_', '-')}: expected {type(default).__name__}, got {value!r}") from None
        setattr(cfg, name, value)
    normalize_ps_mode(cfg, "ps_mode" in values)
    validate(cfg)
    check_applies(cfg, values)
    check_given_tau(cfg, values)
    return cfg


def check_given_tau(cfg: Config, given) -> None:
    """localsgd's tau given as 0: 0 is only the "not given" default (tau 4), so an explicit 0 is refused like every
    other non-positive count instead of silently running with tau = 4."""
    if cfg.takes("localsgd") and "local_steps" in given and cfg.local_steps <= 0:
        raise UsageError(
            f"--local-steps must be positive for --strategy localsgd (the local steps between averages), got "
            f"{cfg.local_steps}; leave it out for the default {DEFAULT_LOCALSGD_TAU}"
        )


def normalize_ps_mode(cfg: Config, mode_given: bool) -> None:
    """``--strategy ssp`` is ``--strategy ps --ps-mode ssp``: one name for it (``ssp``, as results files have
    always called it) and one mode, whichever way it was asked for."""
    if cfg.strategy not in REGISTRY:
        return  # validate() names the choices
    fixed = facts(cfg.strategy).ps_mode
    if fixed:
        if mode_given and cfg.ps_mode != fixed:
            raise UsageError(
                f"--strategy {cfg.strategy} is --strategy ps --ps-mode {fixed}; --ps-mode {cfg.ps_mode} contradicts it"
            )
        cfg.ps_mode = fixed
    elif cfg.takes("parameter server"):
        cfg.strategy = named_for_mode(cfg.ps_mode) or cfg.strategy


def check_applies(cfg: Config, given) -> None:
    """An option given explicitly to a strategy that ignores it is a usage error naming where it applies."""
    for name in given:
        family = FIELDS[name].metadata["applies"]
        if family and not cfg.takes(family):
            where = ", ".join(taking(family))
            raise UsageError(
                f"--{name.replace('_', '-')} applies to --strategy {where}, not to --strategy {cfg.strategy}"
            )


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


POSITIVE = (
    "buckets_in_flight",
    "steps",
    "accumulate_steps",
    "trust_coefficient",
    "fedlama_phi",
    "feddyn_alpha",
    "clients",
    "rounds",
    "local_epochs",
    "server_lr",
    "batch_size",
    "outer_lr",
    "flush_every",
    "synthetic_samples",
    "synthetic_classes",
    "leaf_devices",
    "lr",
    "alpha",
    "deadline",
)
NON_NEGATIVE = (
    "global_batch_size",
    "freeze_cache_mb",
    "partition_over",
    "warmup_steps",
    "bucket_mb",
    "momentum",
    "weight_decay",
    "threads",
    "timeout",
    "staleness",
    "fedprox_mu",
    "client_timeout",
    "upload_buffers",
    "local_steps",
    "lr_warmup_steps",
    "checkpoint_every",
)
HALF_OPEN = ("outer_momentum", "dropout", "server_momentum")  # in [0, 1)
INFINITE_MEANS_NONE = ("deadline",)  # the only float options where inf is a value (no deadline)


def check_freeze(cfg) -> None:
    try:
        spec = cfg.freezing
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    for option in ("freeze_every", "freeze_unit"):
        if getattr(cfg, option) != defaults[option] and spec.mode != "auto":
            raise UsageError(f"{_flag(option)} applies to --freeze auto:ALPHA")
    if cfg.freeze_cache and not spec.on:
        raise UsageError("--freeze-cache keeps a frozen prefix's activations: it needs --freeze")
    if cfg.freeze_cache_mb != defaults["freeze_cache_mb"] and not cfg.freeze_cache:
        raise UsageError("--freeze-cache-mb applies to --freeze-cache")
    if spec.on and cfg.strategy == "ps" and (cfg.ps_mode != "sync" or spec.mode != "fixed"):
        raise UsageError("ps takes --freeze fixed:K@STEP with --ps-mode sync only: auto needs the averaged "
                         "gradient, which the servers hold in pieces, and async workers would push frozen layers "
                         "after others froze them")  # fmt: skip
    last = cfg.steps  # a decision after the last step changes nothing
    if spec.mode == "fixed" and spec.at_step >= last:
        raise UsageError(f"--freeze {cfg.freeze}: step {spec.at_step} is not before the last step ({last}): it "
                         "would never freeze")  # fmt: skip
    if spec.mode == "auto" and spec.every >= last:
        raise UsageError(f"--freeze-every {spec.every}: no freeze point before the last step ({last}); choose "
                         "fewer steps between decisions")  # fmt: skip
    if spec.on and (cfg.exchange_compression.on or cfg.allreduce != "flat"):
        raise UsageError("--freeze does not combine with --compress or --allreduce hierarchical|auto yet (the "
                         "compressed or hierarchical exchanges are not rebuilt over the active layers)")  # fmt: skip
    if spec.on and cfg.takes("localsgd") and (cfg.outer_momentum != 0.0 or cfg.outer_lr != 1.0):
        raise UsageError("--freeze with localsgd does not keep SlowMo's outer buffers across a freeze yet: "
                         "--outer-momentum 0 --outer-lr 1")  # fmt: skip


def check_compress(cfg) -> None:
    try:
        compression = cfg.exchange_compression
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not compression.on:
        if cfg.compress_on != "auto":
            raise UsageError(f"--compress-on {cfg.compress_on} applies with --compress METHOD")
        return
    if cfg.overlap:
        raise UsageError("--compress does not run with --overlap yet: the overlapped buckets are sent uncompressed")
    if compression.needs_allreduce and not cfg.takes("allreduce_compression"):
        where = " or ".join(taking("allreduce_compression"))
        raise UsageError(f"--compress {cfg.compress} needs all-reduces of its factors: {where}")
    if cfg.takes("fedavg"):
        check_fedavg_compress(cfg)
    if cfg.compress_on == "device":
        from bench.compress.where import compress_on_device_blocker  # with bench.compress, as cfg.compression

        blocker = compress_on_device_blocker(cfg, compression)
        if blocker:
            raise UsageError(f"--compress-on device: {blocker}")


def check_fedavg_compress(cfg) -> None:
    if cfg.aggregation != "client":
        raise UsageError(
            f"--compress compresses each client's upload: --aggregation client (not {cfg.aggregation}, whose hosts "
            "send partial sums)"
        )
    if cfg.exchange_compression.error_feedback and client_placement(cfg) != "static":
        raise UsageError(
            f"--compress {cfg.compress} keeps an error-feedback memory per client on the host that trains it: use "
            "--placement static (clients stay on their host), or --error-feedback off"
        )


def validate(cfg: Config) -> None:
    """Checks that need no MPI and no data. Everything here fails identically on every rank."""
    for name, f in FIELDS.items():
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, name) not in choices:
            raise UsageError(
                f"unknown {name.replace('_', ' ')} '{getattr(cfg, name)}'; choose from: {', '.join(choices)}"
            )
    _check_ranges(cfg)
    _check_data(cfg)
    _check_checkpoints(cfg)
    _check_nodes(cfg)


def _check_nodes(cfg) -> None:
    from bench.comm.cuda_aware import device_path_blocker
    from bench.comm.emulated_link import LinkSpec  # mpi4py's constants only, no MPI call

    blocker = device_path_blocker(cfg) if cfg.gpu_path == "device" and cfg.takes("staging") else ""
    if blocker:
        raise UsageError(f"--gpu-path device: {blocker}")
    if cfg.emulate_link:
        try:
            LinkSpec.parse(cfg.emulate_link)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if cfg.ranks_per_node < 0:
        raise UsageError(f"--ranks-per-node must be >= 0 (0: the real nodes), got {cfg.ranks_per_node}")
    if cfg.allreduce != "flat" and cfg.overlap and cfg.overlap_progress == "hooks":
        raise UsageError(
            f"--allreduce {cfg.allreduce} with --overlap-progress hooks: the hooks step the flat ring one message at "
            "a time; use --overlap-progress thread"
        )


def _check_checkpoints(cfg) -> None:
    """Checkpoints every N rows need a schedule whose ranks agree on a row (lock-step steps, rounds); decoupled
    runs checkpoint when stopped (every worker has said goodbye)."""
    if cfg.checkpoint_every and cfg.schedule == "decoupled":
        raise UsageError(
            f"--checkpoint-every is for lock-step and round schedules: --strategy {cfg.strategy}"
            f"{'' if facts(cfg.strategy).ps_mode else f' --ps-mode {cfg.ps_mode}'} has no step all ranks reach "
            "together; it checkpoints when stopped (SIGTERM, SIGUSR1 or the stop file) and resumes from there"
        )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_finite(cfg: Config) -> None:
    """NaN passes no comparison the range checks could make in its favour, but ``--lr inf`` passes ``> 0``: every
    float option must be a number, finite except where infinity means "none" (a run with ``--lr nan`` used to
    complete with a NaN loss and exit 0)."""
    for name, f in FIELDS.items():
        value = getattr(cfg, name)
        if f.type in ("float", float) and not (math.isfinite(value) or (name in INFINITE_MEANS_NONE and value > 0)):
            raise UsageError(f"{_flag(name)} must be a finite number, got {value}")


def _check_ranges(cfg: Config) -> None:
    _check_finite(cfg)
    for name in POSITIVE:
        if not getattr(cfg, name) > 0:
            raise UsageError(f"{_flag(name)} must be positive, got {getattr(cfg, name)}")
    for name in NON_NEGATIVE:
        if not getattr(cfg, name) >= 0:
            raise UsageError(f"{_flag(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in HALF_OPEN:
        if not 0 <= getattr(cfg, name) < 1:
            raise UsageError(f"{_flag(name)} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.eval_every < -1:
        raise UsageError(f"--eval-every must be >= 0 (or -1 for the default), got {cfg.eval_every}")
    if not 0 < cfg.fraction <= 1:
        raise UsageError(f"--fraction must be in (0, 1], got {cfg.fraction}")
    if not 0 < cfg.test_fraction < 1:
        raise UsageError(f"--test-fraction must be in (0, 1), got {cfg.test_fraction}")


def _check_data(cfg: Config) -> None:
    from bench.workload.stragglers import parse_dist  # numpy only; before MPI starts, as every check here

    parse_dist(cfg.straggler_dist)
    parse_dist(cfg.client_speed, "--client-speed")
    if cfg.dataset in FILE_DATASETS and not cfg.data_dir:
        raise UsageError(f"--dataset {cfg.dataset} reads local files: give --data-dir (no downloads here)")
    if cfg.data_dir and not Path(cfg.data_dir).is_dir():
        raise UsageError(f"--data-dir {cfg.data_dir}: not a directory")
    if cfg.aggregation == "tree" and cfg.on_client_timeout == "drop":
        raise UsageError("--aggregation tree cannot drop a silent client rank (its subtree waits for it): use abort")
    if cfg.overlap_progress != "thread" and not cfg.overlap:
        raise UsageError(f"--overlap-progress {cfg.overlap_progress} applies to --overlap runs only")
    if cfg.overlap and cfg.takes("overlap") and cfg.schedule != "lockstep":
        raise UsageError(
            f"--overlap with --strategy {cfg.strategy} needs --ps-mode sync (the event-driven servers are not built "
            "for it)"
        )
    check_compress(cfg)
    check_freeze(cfg)
    if cfg.takes("fedavg"):
        check_federated(cfg)
    if cfg.device == "cuda" and cfg.overlap_progress == "hooks":
        raise UsageError(
            "--overlap-progress hooks runs on --device cpu only (a hook waiting for the GPU would stall autograd):"
            " use the default, thread"
        )
    if cfg.accumulate_steps > 1:
        _check_accumulation(cfg)
    if cfg.partition == "natural" and cfg.dataset not in NATURAL_DATASETS:
        raise UsageError(f"--partition natural needs a dataset with natural groups ({', '.join(NATURAL_DATASETS)})")


def _check_accumulation(cfg) -> None:
    """What --accumulate-steps does not combine with (yet), each with the reason."""
    if cfg.trace:
        raise UsageError("--accumulate-steps with --trace: the trace draws one forward and backward pass per step")
