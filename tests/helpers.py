"""Helpers shared by the test suites: where mpiexec is, and how to launch ``python -m bench``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mpiexec() -> str:
    """The mpiexec beside this Python (the venv's embedded MPICH), else the one on PATH."""
    from bench.sweep import find_mpiexec

    return find_mpiexec()


def bench(ranks: int, *args: str, timeout: float = 180, env: dict | None = None, cwd=None):
    """Run ``mpiexec -n ranks python -m bench ARGS`` and return the CompletedProcess (never raises on rc)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", MPIEXEC_TIMEOUT=str(int(timeout)))
    full_env.update(env or {})
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30, env=full_env, cwd=cwd or ROOT)
