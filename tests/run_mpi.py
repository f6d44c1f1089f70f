"""Run tests/mpi under pytest-mpi at several rank counts: ``python tests/run_mpi.py --sizes 1,2,3,4 [pytest args]``.

Rank 0 prints pytest's report; other ranks write theirs to ``.pytest-mpi/rank-N.log``, printed only when the
run fails. Each launch has a hard time limit (MPIEXEC_TIMEOUT and our own), so a hang fails instead of
stalling CI; each test also has a pytest-timeout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import ROOT, mpiexec  # noqa: E402

LIMIT_S = 600


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,2,3,4")
    args, rest = parser.parse_known_args()
    logs = ROOT / ".pytest-mpi"
    logs.mkdir(exist_ok=True)
    for n in [int(s) for s in args.sizes.split(",")]:
        print(f"=== tests/mpi on {n} rank(s) ===", flush=True)
        for old in logs.glob("rank-*.log"):
            old.unlink()
        cmd = [mpiexec(), "-n", str(n), sys.executable, str(ROOT / "tests" / "mpi_entry.py"), *rest]
        env = dict(os.environ, MPIEXEC_TIMEOUT=str(LIMIT_S), PYTHONUNBUFFERED="1")
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=LIMIT_S + 30).returncode
        except subprocess.TimeoutExpired:
            rc = 124
            print(f"tests/mpi on {n} ranks ran past {LIMIT_S} s: killed", flush=True)
        if rc != 0:
            for log in sorted(logs.glob("rank-*.log")):
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-6000:]}")
            print(f"tests/mpi failed on {n} rank(s) (exit {rc})")
            return rc or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
