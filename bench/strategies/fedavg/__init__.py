"""``fedavg``: rank 0 aggregates, ranks 1..size-1 host the logical clients. strategy (layout), sampling (who
takes part, pure), aggregate (streaming weighted mean and FedOpt, pure), client (a host rank's side of a round),
server (the aggregator's side), report (the summary a run prints). The round loop: :mod:`bench.run.rounds`."""
