"""Checkpoints and resume (``--checkpoint-every N``, a stop request, ``--resume``).

Beside the results file ``OUT`` lives ``OUT.ckpt/``: a folder ``row-N/`` per checkpoint holding one piece per rank
(``rank-R.npz``: that rank's state as named arrays, :mod:`bench.runtime.state`: its strategy's state, its data
loader's position, torch's random state), written by the rank that owns the state (no gather beyond what a rank
holds), and ``manifest.json``, rank 0's small record naming the newest complete checkpoint: its row, the rank count,
the configuration, the evaluations so far, how long each growing dataset of the results file was, and the run's
segments. Writes are atomic (a temporary name, fsync, rename), and the manifest is replaced only after every
piece is on disk and the results file holds every row up to the checkpoint: until then the previous checkpoint
stays the valid one, whatever moment the job is killed.

``--resume`` reads the manifest, loads each rank's piece into the freshly built run, cuts the results file back to
the checkpoint's rows (rows written after it are dropped) and continues appending: on CPU the resumed run is bit
for bit the run that was never stopped (tests/mpi/test_checkpoint.py). Decoupled runs (ps async, ssp) checkpoint
only when stopped, with each rank's own row count in the manifest (``rows``); their resume is consistent, not bit
for bit (:mod:`bench.run.decoupled`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch

from analysis.data import schema
from bench.run.pieces import Piece
from bench.run.replacement import client_prefixes, donor_rank, placed_anew
from bench.runtime.client_state import FULL_EVERY, writing_checkpoint
from bench.runtime.errors import UsageError
from bench.runtime.watchdog import WATCHDOG
from bench.strategies import facts

MANIFEST = "manifest.json"
SCHEDULES = ("lockstep", "rounds", "decoupled")  # decoupled runs (ps async, ssp): at a stop request only
SAME_RUN_EXCEPT = (
    *("resume", "checkpoint_every", "quiet", "timeout", "stop_file", "threads", "flush_every"),
    "out",  # a results file moved with its checkpoint folder (OUT.ckpt) resumes under its new name
    *("fail_rank", "fail_step", "fail_mode"),  # testing aids: where a run was made to fail
)
"""Options a resumed run may change: they do not change what is computed."""


def segment_record(ranks: int) -> dict:
    """Where and when this segment of a run ran (its rows are filled in as it goes): provenance for a run that
    was stopped and resumed, perhaps by Slurm's requeue on other nodes (fedavg: perhaps on another rank count)."""
    env = os.environ
    return {
        "start": 1,
        "world_size": ranks,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": os.uname().nodename,
        "slurm_job_id": env.get("SLURM_JOB_ID", ""),
        "slurm_restart_count": int(env.get("SLURM_RESTART_COUNT", "0") or 0),
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB): the manifest records rank 0's, and how much
    its checkpoints raised it, so that a benchmark can check rank 0 stays O(model)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder(out: str) -> Path:
    return Path(f"{out}.ckpt")


def rank_state(run) -> dict[str, np.ndarray]:
    """This rank's state: the strategy's, the loader's position, torch's random state."""
    state = {f"strategy/{k}": v for k, v in run.strategy.state_dict().items()}
    if run.loader is not None:
        state |= {f"loader/{k}": v for k, v in run.loader.state_dict().items()}
    state["rng/torch"] = torch.get_rng_state().numpy().copy()
    return state


def load_rank_state(run, state: dict) -> None:
    def part(prefix: str) -> dict:
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    run.strategy.load_state_dict(part("strategy/"))
    if run.loader is not None:
        run.loader.load_state_dict(part("loader/"))
    torch.set_rng_state(torch.from_numpy(state["rng/torch"]))


def _fsync_write(path: Path, write) -> None:
    """Write through ``write(file)`` to a temporary name, fsync, rename over ``path`` (atomic on POSIX)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    folder_fd = os.open(path.parent, os.O_RDONLY)  # the rename itself on disk (a node crash, not only a kill)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)


def _killed_mid_write(path: Path, state: dict) -> None:
    """Testing aid (--fail-mode kill-in-checkpoint): half of the piece reaches its temporary name, on disk, and the
    process is killed as a node failure or the scheduler would kill it (SIGKILL: no handler runs)."""
    whole = io.BytesIO()
    np.savez(whole, **state)
    with open(path.with_name(f".{path.name}.tmp"), "wb") as fh:  # the name _fsync_write writes to
        fh.write(whole.getvalue()[: whole.tell() // 2])
        fh.flush()
        os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in SAME_RUN_EXCEPT}


class Checkpoints:
    """One run's checkpoints. Collective methods are called by every rank at the same row."""

    def __init__(self, ctx):
        self.ctx, self.cfg, self.comm = ctx, ctx.cfg, ctx.comm
        self.dir = folder(ctx.run.out)
        self.enabled = ctx.run.strategy.schedule in SCHEDULES
        self.pending = -1  # a row whose pieces are written and whose manifest is not yet
        self.written, self.base = 0, 0  # checkpoints this process wrote; the row of the last full one
        self.last_row = -1  # the row of the last piece written (written again there: whole, as it replaces it)
        self.rss_growth_mib = 0.0  # the most a checkpoint raised this rank's peak memory (resident set)
        if self.comm.rank == 0 and not self.cfg.resume and self.dir.exists():
            shutil.rmtree(self.dir)  # an earlier run's checkpoint of this file: a fresh run replaces both

    def _killed_here(self, row: int) -> bool:
        cfg = self.cfg
        return cfg.fail_mode == "kill-in-checkpoint" and self.comm.rank == cfg.fail_rank and row - 1 == cfg.fail_step

    def due(self, done: int) -> bool:
        every = self.cfg.checkpoint_every
        return self.enabled and bool(every) and done % every == 0

    def write_pieces(self, row: int) -> float:
        """Every rank: its piece of the checkpoint at ``row`` (rows done); returns the seconds it took."""
        t, peak = time.perf_counter(), peak_rss_mib()
        where = self.dir / f"row-{row}"
        where.mkdir(parents=True, exist_ok=True)
        full = self.written % FULL_EVERY == 0 or row == self.last_row  # a rewrite of a row's piece: whole
        with writing_checkpoint(row, full):  # per-client state: what changed since the last one (all if full)
            state = rank_state(self.ctx.run)
        self.written += 1
        self.base = row if full else self.base
        self.last_row = row
        piece = where / f"rank-{self.comm.rank}.npz"
        if self._killed_here(row):
            _killed_mid_write(piece, state)
        _fsync_write(piece, lambda fh: np.savez(fh, **state))
        self.rss_growth_mib = max(self.rss_growth_mib, peak_rss_mib() - peak)
        self.pending = row
        return time.perf_counter() - t

    def commit(self, lengths: dict, rows: list[int] | None = None) -> None:
        """Rank 0, after a flush that every rank entered having written its piece: name the checkpoint in the
        manifest, then remove the older ones. ``rows``: each rank's rows where ranks took different numbers of
        steps (decoupled runs; their one evaluation, at the stop, is not kept: the resumed run evaluates at its
        end)."""
        if self.comm.rank != 0 or self.pending < 0:
            return
        ctx, row = self.ctx, self.pending
        every = 0 if rows is not None else self.cfg.evaluation_interval
        evaluations, lengths = scheduled_evaluations(ctx.evals, row, every, lengths)
        manifest = {
            "row": row,
            "unit": ctx.unit,
            "world_size": self.comm.size,
            "strategy": self.cfg.strategy,
            "config": json.loads(self.cfg.to_json()),
            "pieces": [f"row-{row}/rank-{r}.npz" for r in range(self.comm.size)],
            "full_row": self.base,  # the pieces refer to rows back to it (per-client state written incrementally)
            "rows": [int(n) for n in rows] if rows is not None else [row] * self.comm.size,
            "evaluations": [list(e) for e in evaluations],
            "growing": lengths,
            "segments": ctx.segments("running" if not ctx.stopped_by else ctx.status),
            "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rank0_memory_mib": {"peak_rss": peak_rss_mib(), "raised_by_checkpoints": self.rss_growth_mib},
        }
        _fsync_write(self.dir / MANIFEST, lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))
        for old in self.dir.glob("row-*"):  # back to the last full checkpoint, whose pieces later ones refer to
            if int(old.name.split("-")[1]) < self.base:  # later rows: another rank's next checkpoint, under way
                shutil.rmtree(old, ignore_errors=True)
        self.pending = -1


EVALUATION_SERIES = ("metrics/eval_step", "metrics/test_accuracy", "metrics/test_loss")


def scheduled_evaluations(evals: list, row: int, every: int, lengths: dict) -> tuple[list, dict]:
    """The evaluations a run that was never stopped has at ``row``: an evaluation made only because the run stopped
    there (not due every ``--eval-every``) is left out, of the list and of the file's lengths, so that the resumed
    run's evaluations are the uninterrupted run's."""
    if not evals or evals[-1][0] != row - 1 or (every and row % every == 0):
        return list(evals), lengths
    shorter = {schema.file_name(n): len(evals) - 1 for n in EVALUATION_SERIES}
    return list(evals[:-1]), lengths | {k: v for k, v in shorter.items() if k in lengths}


def read_manifest(cfg, size: int) -> dict:
    """The newest complete checkpoint of ``--out`` for ``--resume``; a usage error if there is none or it belongs to
    another run (another rank count, strategy or option that changes what is computed)."""
    path = folder(cfg.out) / MANIFEST
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint beside {cfg.out} ({path} does not exist)")
    try:
        manifest = json.loads(path.read_text())
        missing = [key for key in ("world_size", "row", "unit", "config", "pieces") if key not in manifest]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--resume: {path} is unreadable ({exc}); remove {folder(cfg.out)} to start afresh") from None
    if manifest["world_size"] != size and not facts(cfg.strategy).logical_ranks:
        raise UsageError(
            f"--resume: the checkpoint was written by {manifest['world_size']} ranks, this job has {size}; "
            f"resume with {manifest['world_size']}"
        )
    ours, theirs = comparable(json.loads(cfg.to_json())), comparable(manifest["config"])
    changed = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise UsageError(
            f"--resume: the checkpoint is of another run: {flags} {'differs' if len(changed) == 1 else 'differ'}"
        )
    rows = cfg.rounds if manifest["unit"] == "round" else cfg.steps
    if manifest["row"] >= rows and len(set(manifest.get("rows", [0]))) == 1:  # a decoupled run: its file says
        raise UsageError(f"--resume: the run in {cfg.out} is complete ({manifest['row']} {manifest['unit']}s)")
    return manifest


def restore(ctx, manifest: dict) -> None:
    """Every rank: load its piece of the manifest's checkpoint into the run (under the watchdog: shared file
    systems can stall)."""
    pieces = [folder(ctx.run.out) / name for name in manifest["pieces"]]
    rank, moved = ctx.comm.rank, len(pieces) != ctx.comm.size
    piece = pieces[donor_rank(rank, len(pieces)) if moved else rank]
    with WATCHDOG.guard(ctx.cfg.timeout, f"reading checkpoint {piece}"), contextlib.ExitStack() as stack:
        try:
            own = Piece(piece, stack)
            if moved:  # fedavg on another rank count: each client's state from the piece that held it
                prefixes = client_prefixes(ctx.run.strategy, "strategy")
                others = [Piece(p, stack) for p in pieces] if prefixes else []
                mine = set(ctx.run.strategy.topology.clients_of_rank.get(rank, ()))
                load_rank_state(ctx.run, placed_anew(own, others, prefixes, mine))
            else:
                load_rank_state(ctx.run, dict(own))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise UsageError(f"--resume: checkpoint piece {piece} is unreadable ({exc})") from None


def finished(cfg) -> str:
    """``--resume`` of a run whose results file says it ended (complete, or diverged: resuming would diverge
    again): what to say instead of resuming ('' to resume)."""
    if not cfg.resume or not os.path.exists(cfg.out):
        return ""
    try:
        with h5py.File(cfg.out, "r", swmr=True) as f:
            status, done, why = f.attrs.get("status"), int(f.attrs.get("completed_steps", 0)), f.attrs.get("stopped_by")
    except OSError:
        return ""
    if status == "complete":
        return f"the run in {cfg.out} is complete ({done} {facts(cfg.strategy).rows}s); nothing to resume"
    if status == "diverged":
        return f"the run in {cfg.out} diverged ({why}); resuming would diverge again: nothing to resume"
    return ""


def check_results_file(out: str, manifest: dict) -> None:
    """Before cutting the results file back: it must exist and be the checkpoint's run (same options, at least the
    checkpoint's rows), or it is left as it is and the resume is a usage error."""
    if not os.path.exists(out):
        raise UsageError(f"--resume: the results file {out} is missing (its checkpoint is in {folder(out)})")
    try:
        with h5py.File(out, "r", swmr=True) as f:
            config, rows = json.loads(f.attrs["config"]), int(f.attrs.get("completed_steps", 0))
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"--resume: cannot read the results file {out} ({exc})") from None
    if comparable(config) != comparable(manifest["config"]) or rows < manifest["row"]:
        raise UsageError(f"--resume: {out} is not the run of the checkpoint in {folder(out)} (other options or rows)")
