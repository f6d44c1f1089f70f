"""Run-summary lines whose counts a reader checks against the file: each gradient counted once."""

import types

import numpy as np

from bench.run.decoupled import _staleness_line


def test_staleness_counts_each_applied_gradient_once():
    """Two servers each apply the pieces of the same 3 gradients (6 rows) and one server one more in flight:
    4 applied gradients, not 7; the rows are said apart."""
    servers = np.array([0, 1, 0, 1, 0, 1, 0])
    staleness = np.array([0, 0, 1, 1, 2, 2, 3], dtype=np.float64)
    ctx = types.SimpleNamespace(extra={"ps/updates/staleness": (staleness, "updates"),
                                       "ps/updates/server": (servers, "rank")})  # fmt: skip
    line = _staleness_line(ctx)
    assert "mean 1.29, max 3 updates over 4 applied gradients" in line
    assert "(one row per server: 7 rows from 2 servers)" in line
    one = types.SimpleNamespace(extra={"ps/updates/staleness": (staleness[:3], "clocks"),
                                       "ps/updates/server": (np.zeros(3, np.int64), "rank")})  # fmt: skip
    assert _staleness_line(one).endswith("over 3 applied gradients")
    assert _staleness_line(types.SimpleNamespace(extra={})) == ""
