"""Config and CLI (defaults, validation, TOML) and the HDF5 writer/reader round trip."""

import json

import numpy as np
import pytest
from mpi4py import MPI

from analysis.data.load import ResultsError, load
from bench import cli
from bench.config import FIELDS, Config
from bench.measure import results
from bench.measure.recorder import Recorder
from bench.runtime.errors import UsageError


def test_help_documents_every_option_with_default(capsys):
    with pytest.raises(SystemExit):
        cli.parse(["train", "--help"])
    text = capsys.readouterr().out
    shown = [name for name, f in FIELDS.items() if not f.metadata["hidden"]]  # testing aids are hidden (issue 12)
    for name in FIELDS:
        flag = "--" + name.replace("_", "-")
        assert (flag in text) == (name in shown), flag
    assert text.count("(default:") >= len(shown)


@pytest.mark.parametrize(
    "argv,match",
    [
        (["train", "--strategy", "gossip"], "unknown strategy 'gossip'"),
        (["train", "--model", "vgg"], "unknown model"),
        (["train", "--dataset", "imagenet"], "unknown dataset"),
        (["train", "--steps", "0"], "--steps must be positive"),
        (["train", "--batch-size", "-1"], "--batch-size must be positive"),
        (["train", "--dataset", "mnist"], "give --data-dir"),
        (["train", "--data-dir", "/nonexistent/x"], "not a directory"),
        (["train", "--steps", "abc"], "invalid int value"),
        (["train", "--bogus"], "unrecognized arguments"),
        (["train", "--lr", "nan"], "--lr must be a finite number, got nan"),
        (["train", "--lr", "inf"], "--lr must be a finite number, got inf"),
        (["train", "--momentum", "nan"], "--momentum must be a finite number"),
        (["train", "--strategy", "fedavg", "--deadline", "nan"], "--deadline must be a finite number"),
        (["train", "--straggler-dist", "lognormal:nan"], "finite SIGMA"),
    ],
)
def test_bad_input_is_a_usage_error(argv, match):
    with pytest.raises(UsageError, match=match):
        cli.parse(argv)


def test_infinite_deadline_means_none_and_is_accepted():
    assert cli.parse(["train", "--strategy", "fedavg", "--deadline", "inf"]).cfg.deadline == float("inf")


def test_toml_then_command_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nsteps = 7\nbatch-size = 4\nlr = 0.2\ntrace = true\n")
    args = cli.parse(["train", "--config", str(path), "--steps", "9"])
    assert (args.cfg.steps, args.cfg.batch_size, args.cfg.lr, args.cfg.trace) == (9, 4, 0.2, True)
    path.write_text("stepz = 3\n")
    with pytest.raises(UsageError, match="unknown option 'stepz'"):
        cli.parse(["train", "--config", str(path)])


def test_config_json_has_all_defaults():
    cfg = json.loads(Config().to_json())
    assert set(FIELDS) <= set(cfg) and cfg["scaling"] == "weak"


@pytest.mark.parametrize("schema", [1, 2, 3])
def test_schema_round_trip(tmp_path, schema):
    """The Recorder's gathered blocks, written by the one-shot writer as a version-1 or -2 file, load alike."""
    rec = Recorder(MPI.COMM_SELF, steps=5)
    fwd = rec.add("timing/forward", "s", (3,))
    byt = rec.add("timing/comm_bytes", "bytes", (3,), dtype=np.int64)
    fwd[:] = np.arange(15).reshape(5, 3)
    byt[:] = 7
    blocks = rec.gather(4)  # a run that finished 4 of 5 steps
    path = str(tmp_path / "r.h5")
    results.write(
        path,
        {"strategy": "ring", "config": {"steps": 5}, "world_size": 1},
        blocks | {"layers/name": (np.array(["a", "b", "c"]), "1")},
        schema=schema,
    )
    run = load(path)
    assert run.attrs["schema_version"] == schema
    assert run.strategy == "ring" and run.config == {"steps": 5} and run.world_size == 1
    assert run.data["timing/forward"].shape == (1, 4, 3)
    np.testing.assert_array_equal(run.data["timing/forward"][0], np.arange(12).reshape(4, 3))
    assert run.units["timing/comm_bytes"] == "bytes" and list(run.data["layers/name"]) == ["a", "b", "c"]


def test_reader_rejects_bad_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ResultsError, match="junk.h5"):
        load(junk)
    old = str(tmp_path / "old.h5")
    results.write(old, {}, {})
    import h5py

    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ResultsError, match="schema version 99"):
        load(old)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"strategy": "ps", "staleness": 3}, "--staleness applies to --strategy ssp, not to --strategy ps"),
        ({"strategy": "ring", "fraction": 0.2}, "--fraction applies to --strategy fedavg, not to --strategy ring"),
        ({"strategy": "fedavg", "steps": 10}, "--steps applies to --strategy ring, localsgd, ps, ssp"),
        ({"strategy": "ring", "local_steps": 2}, "--local-steps applies to --strategy localsgd"),
        ({"strategy": "ssp", "ps_mode": "async"}, "contradicts"),
        ({"device": "cuda", "overlap": True, "overlap_progress": "hooks"}, "hooks runs on --device cpu only"),
        ({"strategy": "ring", "compress": "topk:2"}, "expected one of none, fp16"),
        ({"strategy": "ring", "compress": "fp16", "overlap": True}, "does not run with --overlap yet"),
        ({"strategy": "ddp", "compress": "fp16"}, "--compress applies to --strategy ring, localsgd, ps, ssp, fedavg"),
        ({"strategy": "ps", "compress": "powersgd:2"}, "all-reduces of its factors"),
        ({"strategy": "fedavg", "compress": "powersgd:2"}, "all-reduces of its factors"),
        ({"strategy": "fedavg", "compress": "topk:0.1", "placement": "balanced"}, "use --placement static"),
        ({"strategy": "fedavg", "compress": "fp16", "aggregation": "host"}, "--aggregation client"),
        ({"strategy": "localsgd", "local_steps": 0}, "--local-steps must be positive for --strategy localsgd"),
    ],
)
def test_options_that_do_not_apply_are_usage_errors(values, message):
    from bench.config import build
    from bench.runtime.errors import UsageError

    with pytest.raises(UsageError, match=message):
        build(values)


def test_ps_mode_ssp_is_the_ssp_strategy():
    from bench.config import build

    a = build({"strategy": "ps", "ps_mode": "ssp", "staleness": 1})
    b = build({"strategy": "ssp", "staleness": 1})
    assert (a.strategy, a.ps_mode) == (b.strategy, b.ps_mode) == ("ssp", "ssp")
    assert build({"strategy": "fedavg", "rounds": 3}).rounds == 3  # defaults of other strategies stay silent
    assert build({"strategy": "localsgd"}).tau == 4 and build({"strategy": "localsgd", "local_steps": 2}).tau == 2
    assert build({"strategy": "fedavg", "local_steps": 0}).local_steps == 0  # fedavg: 0 means "use epochs"


def test_names_come_from_the_registries_and_testing_options_are_hidden():
    from bench.cli import make_parser
    from bench.config import MODELS, STRATEGIES
    from bench.strategies import REGISTRY, strategy_class
    from bench.workload import models

    assert STRATEGIES == tuple(REGISTRY) and set(MODELS) == set(models.MODEL_CLASSES)
    assert all(strategy_class(name).name == name for name in STRATEGIES)
    text = make_parser().format_help() + make_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--fail-rank" not in text and "{ring,localsgd,ps,ssp,fedavg,ddp}" in text


def test_placement_auto_keeps_client_state_on_its_host():
    """The default placement resolves a conflict instead of failing: SCAFFOLD and error-feedback compression get
    static (their per-client state lives on one host), plain fedavg and unbiased compression balanced; an explicit
    balanced with such state is still refused; the file stores the resolved placement. Catches: auto resolved
    to balanced for SCAFFOLD (the old "use --placement static" failure), or a given placement overridden."""
    from bench.config import build
    from bench.strategies.fedavg.needs import client_placement

    base = {"strategy": "fedavg"}
    assert client_placement(build(base)) == "balanced"
    scaffold = build(base | {"fl_algorithm": "scaffold"})
    assert client_placement(scaffold) == "static" and json.loads(scaffold.to_json())["placement"] == "static"
    assert client_placement(build(base | {"compress": "topk:0.1"})) == "static"  # error feedback on (biased)
    assert client_placement(build(base | {"compress": "fp16"})) == "balanced"  # unbiased: no memory
    assert client_placement(build(base | {"compress": "topk:0.1", "error_feedback": "off"})) == "balanced"
    assert client_placement(build(base | {"placement": "static"})) == "static"
    with pytest.raises(UsageError, match="--placement static"):
        build(base | {"fl_algorithm": "scaffold", "placement": "balanced"})


def test_node_options_are_checked():
    """--ranks-per-node is >= 0; --allreduce applies to ring and localsgd only, and not with the hooks that step
    the flat ring one message at a time."""
    from bench.config import build
    from bench.runtime.errors import UsageError

    assert build({"allreduce": "hierarchical", "ranks_per_node": 2}).allreduce == "hierarchical"
    with pytest.raises(UsageError, match="--ranks-per-node must be >= 0"):
        build({"ranks_per_node": -1})
    with pytest.raises(UsageError, match="--overlap-progress thread"):
        build({"allreduce": "hierarchical", "overlap": True, "overlap_progress": "hooks"})
    with pytest.raises(UsageError, match="allreduce"):
        build({"strategy": "ps", "allreduce": "hierarchical"})


def test_emulated_link_option():
    """--emulate-link LATENCY_US,GBPS: parsed to seconds and bytes per second; malformed or out of range is a
    usage error; ddp's messages are gloo's, so it does not take the option."""
    from bench.comm.emulated_link import LinkSpec
    from bench.config import build
    from bench.runtime.errors import UsageError

    spec = LinkSpec.parse("50,10")
    assert (spec.latency_s, spec.bytes_per_s, spec.seconds(1_250_000)) == pytest.approx((50e-6, 1.25e9, 1e-3))
    assert build({"emulate_link": "50,10", "ranks_per_node": 2}).emulate_link == "50,10"
    for bad in ("50", "a,b", "50,0", "-1,10", "50,inf"):
        with pytest.raises(UsageError, match="--emulate-link"):
            build({"emulate_link": bad})
    with pytest.raises(UsageError, match="emulate-link"):
        build({"strategy": "ddp", "emulate_link": "50,10"})
