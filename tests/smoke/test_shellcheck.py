"""Every script in slurm/ passes shellcheck (.ci/run installs it from Debian's packages when missing)."""

import shutil
import subprocess

import pytest

from tests.helpers import ROOT


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_slurm_scripts_pass_shellcheck():
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "slurm").glob("*.sh"))
    assert {"slurm/fedavg_256.sh", "slurm/ps.sh", "slurm/ssp.sh", "slurm/sweep.sh", "slurm/env.sh"} <= set(scripts)
    proc = subprocess.run(["shellcheck", "-x", *scripts], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
