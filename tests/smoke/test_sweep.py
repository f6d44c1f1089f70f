"""``python -m bench sweep`` end to end: a 2 x 2 grid launches 4 real runs (of 1 rank: what is tested is the sweep,
and a launch costs about 3 s of CPU per rank here), resumes without re-running them, and ``analysis report`` pivots
them into 4 cells (pooling repeats into cells: tests/unit/test_analysis_report.py). Bad specs fail before any
launch."""

import subprocess
import sys

import pytest

from analysis.__main__ import load_all
from analysis.views.pivot import pivot_tables, swept_options
from tests.helpers import ROOT

SPEC = """
[sweep]
name = "tiny"
ranks = 1
repeats = 1
out_dir = "{out}"

[base]
model = "mlp"
dataset = "synthetic"
synthetic_shape = "1x6x6"
synthetic_samples = 512
steps = 6
eval_every = 3

[grid]
lr = [0.05, 0.2]
batch_size = [8, 16]
"""


def sweep(*args, timeout=600):
    cmd = [sys.executable, "-m", "bench", "sweep", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_sweep_runs_the_grid_and_the_report_pivots_it(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC.format(out=tmp_path / "out"))
    proc = sweep(spec)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[4/4]" in proc.stdout and "ETA" in proc.stdout
    runs = load_all([str(tmp_path / "out")])
    assert len(runs) == 4 and {r.config["seed"] for r in runs} == {0}
    assert swept_options(runs) == ["batch_size", "lr"]  # config order (alphabetical)
    table = pivot_tables(runs)[0]
    cells = [c for row in table.rows for c in row[1:]]
    assert len(table.rows) == 2 and len(cells) == 4 and all(c.n == 1 for c in cells)
    again = sweep(spec)
    assert again.returncode == 0 and again.stdout.count("already finished") == 4
    report = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(tmp_path / "out"), "-o", str(tmp_path / "rep")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "over batch_size, lr" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.parametrize(
    "text,message",
    [
        ("[grid]\nlr = 0.1\n", "must be a non-empty list"),
        ("[grid]\nwarp = [1, 2]\n", "not a bench train option"),
        ("[base]\nstrategy = 'nope'\n", "unknown strategy"),
        ("[sweeps]\n", "unknown tables"),
    ],
)
def test_bad_specs_are_one_clear_error(tmp_path, text, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    proc = sweep(spec)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_slurm_mode_writes_one_array_per_rank_count(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC.format(out=tmp_path / "out").replace("ranks = 1", "ranks = [1, 2]").replace(
        "repeats = 1", "repeats = 2"))  # fmt: skip
    proc = sweep(spec, "--slurm")
    assert proc.returncode == 0, proc.stderr
    scripts = sorted((tmp_path / "out").glob("sweep_n*.sh"))
    assert [s.name for s in scripts] == ["sweep_n1.sh", "sweep_n2.sh"]
    text = scripts[1].read_text()
    assert "#SBATCH --array=1-8" in text and "#SBATCH --ntasks=2" in text
    lines = (tmp_path / "out" / "configs_n2.txt").read_text().split()
    assert len(lines) == 8 and all(line.endswith(".toml") for line in lines)
