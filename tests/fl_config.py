"""The run configuration the FedAvg algorithm tests hand the algorithms: a real :class:`bench.config.Config` with
the given fields (the rest at their defaults), so the algorithms read the typed options (``cfg.federated``) as in a
run, parsed by the same code."""

from __future__ import annotations

import dataclasses

from bench.config import Config


def fl_config(**fields) -> Config:
    return Config(**fields)


def with_options(cfg: Config, **fields) -> Config:
    """A copy with some fields changed (its typed options parsed anew)."""
    return dataclasses.replace(cfg, **fields)
