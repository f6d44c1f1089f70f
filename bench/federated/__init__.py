"""Federated averaging (``--strategy fedavg``): rank 0 aggregates, ranks 1..size-1 host the logical clients.

Modules: :mod:`sampling` (who takes part in a round, pure), :mod:`aggregate` (streaming weighted mean and the FedOpt
server updates, pure), :mod:`client` (a host rank's side of a round), :mod:`server` (the aggregator's side),
:mod:`loop` (rounds, recording, results).
"""
