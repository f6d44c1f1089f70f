"""``fedavg``: its rank layout, and the hooks by which the rounds schedule (:mod:`bench.run.rounds`) plays a round.

Rank 0 is the aggregator (:mod:`server`), ranks 1..size-1 host the logical clients (:mod:`client`). Who takes part
in a round (:mod:`sampling`), how the server folds the updates and steps (:mod:`aggregate`) are pure functions
tested alone. The loop itself, with evaluation, stop agreement and results, is the rounds schedule's.
"""

from __future__ import annotations

import resource

import numpy as np

from bench.comm.staging import HostStaging
from bench.measure.timing import LayerTimer, make_clock
from bench.strategies.base import Strategy
from bench.strategies.fedavg.byzantine import attack_check
from bench.strategies.fedavg.client import ClientHost
from bench.strategies.fedavg.placement import place
from bench.strategies.fedavg.protocol import CLIENT_RECORD_UNITS, STATUS_NAMES, ClientStatus, client_log
from bench.strategies.fedavg.registry import algorithm_class, algorithm_for
from bench.strategies.fedavg.replica import sub_models
from bench.strategies.fedavg.server import Aggregator
from bench.workload.models import flat_parameters, layers_of
from bench.workload.stragglers import parse_dist
from kernels.topology import Topology

AGGREGATOR_SERIES = ("send", "receive", "aggregate", "idle", "select")
COUNTS = ("candidates", "sampled", "finished", "dropped", "late")


class FedAvgStrategy(Strategy):
    state_attributes = ("aggregator", "host", "algorithm")  # the global model and the algorithm's state
    name = "fedavg"
    needs_full_batches = False  # a client smaller than --batch-size trains on one batch of all its samples

    def make_topology(self, rank, size):
        return Topology.federated(rank, size, self.cfg.clients)

    def after_backward(self, step):
        raise NotImplementedError("fedavg plays rounds (bench.run.rounds), not steps")

    # ---- round hooks ---------------------------------------------------------------------------------
    def declare(self, rec):
        L = (len(self.layers),)
        rec.add("fedavg/download", "s", L)
        rec.add("fedavg/upload", "s", L)
        rec.add("fedavg/select", "s")  # power-of-choice: a host's loss evaluation and exchange
        for name in AGGREGATOR_SERIES:
            rec.add(f"fedavg/aggregator_{name}", "s")
        for name in COUNTS:
            rec.add(f"fedavg/{name}", "clients", dtype=np.int64)
        algorithm_class(self.cfg).declare_series(rec, L)
        if self.cfg.exchange_compression.on:
            rec.add("timing/compress", "s", L)
            rec.add("compress/sent_bytes", "bytes", L, dtype=np.int64)
            rec.add("compress/dense_bytes", "bytes", L, dtype=np.int64)
            rec.add("compress/residual_norm", "1")

    def prepare(self, run) -> None:
        """The aggregator on rank 0, a client host (its clients' data on this rank) elsewhere."""
        self.aggregator = self.host = None
        self.partition_sizes = [len(p) for p in run.parts]
        initial = flat_parameters(run.layers)
        self.algorithm = algorithm_for(self.cfg, initial.size, self.partition_sizes)
        self.algorithm.set_model(np.cumsum([0] + [layer.numel for layer in run.layers]))
        subs = sub_models(self.cfg, run, self.algorithm.widths)  # --fl-algorithm width: a tier's narrower model
        for tier, (model, indices) in subs.items():
            self.algorithm.set_sub_model(tier, indices, [layer.numel for layer in layers_of(model)])
        if self.algorithm.plans_layers:  # FedLAMA: layers as units; all-vector layers (biases, norms) stay at 1
            eligible = [any(p.dim() > 1 for p in layer.params) for layer in run.layers]
            self.algorithm.set_layers(np.cumsum([0] + [layer.numel for layer in run.layers]), eligible)
        # their messages go through the strategy's communicator, which counts (and with --emulate-link paces) the
        # bytes between nodes; on the world communicator they once escaped both
        if self.world.rank == 0:
            self.aggregator = Aggregator(self.cfg, self.comm, run.layers, initial, self.topology, self.algorithm)
            self.staging = HostStaging(run.layers, run.device)
        else:
            timer = LayerTimer(run.layers, make_clock(run.device.type), root=run.model)
            sigma = parse_dist(self.cfg.client_speed, "--client-speed")
            self.host = ClientHost(self.cfg, self.comm, run, self.topology.my_clients, timer, sigma, self.algorithm)
            self.host.nodes = self.topology.nodes
            self.host.use_sub_models(subs, self.topology.my_clients)

    def sampled(self, round_: int) -> np.ndarray:
        """Configure the round: which clients take part (the algorithm's hook)."""
        return self.algorithm.configure_round(round_)

    def aggregate_round(self, round_: int, sampled, rec) -> list[int]:
        """Rank 0: send the model, fold the updates, step; record the round. Returns client ranks lost."""
        timeout = self.cfg.client_timeout or self.cfg.timeout
        out = self.aggregator.run_round(round_, sampled, timeout, self.placement(sampled))
        for name in AGGREGATOR_SERIES:
            rec[f"fedavg/aggregator_{name}"][round_] = out[name]
        for name in COUNTS:
            rec[f"fedavg/{name}"][round_] = out[name]
        rec["metrics/loss"][round_] = np.nan
        if self.algorithm.plans_layers:
            last = self.algorithm.last or {"averaged": 0, "discrepancy": np.nan, "interval": self.algorithm.intervals}
            for name, values in last.items():
                rec[f"fedlama/{name}"][round_] = values
            self.algorithm.last = {}
        return out["lost"]

    def global_model_check(self, round_: int) -> tuple[float, str, str]:
        """Rank 0, after the round's server step, for :class:`bench.run.divergence.Divergence`: (max |global model|,
        which is non-finite iff some parameter is; what it is; the round's first trained client whose loss was
        non-finite, if one was)."""
        largest = float(np.max(np.abs(self.aggregator.values)))
        if np.isfinite(largest):
            return largest, "", ""
        ok = (ClientStatus.OK, ClientStatus.LATE)
        bad = [r for r in self.aggregator.log if r[0] == round_ and r[4] in ok and not np.isfinite(r[7])]
        context = f" (client {bad[0][1]} on rank {bad[0][2]} reported loss {bad[0][7]})" if bad else ""
        return largest, "max |global model|", context

    def placement(self, sampled) -> dict[int, int]:
        """Client -> rank training it this round (``--placement``; every rank computes the same)."""
        return place(sampled, self.partition_sizes, self.topology, self.cfg)

    def my_sampled(self, sampled) -> list[int]:
        """The round's clients this rank trains, in client-id order."""
        return sorted(k for k, rank in self.placement(sampled).items() if rank == self.world.rank)

    def host_round(self, round_: int, sampled, mine: list[int], rec) -> None:
        """A client rank: download the model, train and upload each of its sampled clients."""
        self.host.round_hosts = sorted(set(self.placement(sampled).values()))
        self.host.round_sampled = [int(k) for k in sampled]
        self.host.run_round(round_, mine, rec)

    def load_global_model(self) -> None:
        """Rank 0: the global model into the torch model, for evaluation."""
        for i in range(len(self.layers)):
            np.copyto(self.staging.numpy[i], self.aggregator.layer(self.aggregator.values, i))
            self.staging.unpack(i, grads=False)

    def round_datasets(self, peak_rss: list[int]) -> tuple[dict, dict]:
        """Rank 0: the per-client log and memory as datasets, and the attributes that explain them."""
        log = client_log(self.aggregator.log)
        datasets = {f"fedavg/clients/{n}": (log[n], unit) for n, unit in CLIENT_RECORD_UNITS.items()}
        datasets["fedavg/peak_rss"] = (np.array(peak_rss, dtype=np.int64), "bytes")
        attack = self.cfg.federated.attack
        if attack is not None:  # which logged clients attacked (a pure function of seed, round and cohort)
            cohort = {r: self.algorithm.configure_round(r) for r in np.unique(log["round"]).astype(int)}
            flags = [
                int(c) in attack.attackers(self.cfg.seed, int(r), cohort[int(r)])
                for r, c in zip(log["round"], log["client"])
            ]
            datasets["fedavg/clients/byzantine"] = (np.array(flags, dtype=np.int8), "1")
        datasets |= self._tier_datasets(log)
        attrs = {
            "client_status_codes": {int(k): v for k, v in STATUS_NAMES.items()},
            "clients_of_rank": {str(k): list(v) for k, v in self.topology.clients_of_rank.items()},
        }
        if attack is not None:
            attrs["byzantine_check"] = attack_check(self.algorithm.rule, attack, self.cfg.seed, cohort)
        if self.cfg.federated.tiers is not None:
            tiers = self.cfg.federated.tiers.describe(self.cfg.clients, self.algorithm.tier_facts())
            attrs["client_tiers"] = tiers | {"tier_of_client": self.algorithm.tier_of.tolist()}
        return datasets, attrs

    def _tier_datasets(self, log) -> dict:
        """With ``--client-tiers``: per logged client its tier and, where each client's model goes to rank 0 as it
        is (``--aggregation client``, no ``--compress``), the model bytes it uploaded (the layers it trained; none
        where it dropped out)."""
        tier_of = self.algorithm.tier_of
        if tier_of is None:
            return {}
        tiers = {"fedavg/clients/tier": (tier_of[log["client"].astype(int)], "1")}
        if self.cfg.aggregation != "client" or self.cfg.exchange_compression.on:
            return tiers
        sizes = np.array([layer.bytes for layer in self.layers], dtype=np.int64)
        sent = [
            self.algorithm.uploaded_bytes(client, sizes) if status in (ClientStatus.OK, ClientStatus.LATE) else 0
            for client, status in zip(log["client"].astype(int), log["status"])
        ]
        return tiers | {"fedavg/clients/upload_bytes": (np.array(sent, dtype=np.int64), "bytes")}

    @staticmethod
    def peak_rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def describe(self):
        cfg = self.cfg
        keys = ("clients", "fraction", "rounds", "local_epochs", "local_steps", "fedprox_mu", "server_opt", "dropout",
                "deadline", "fl_algorithm", "fedlama_phi", "aggregator", "byzantine", "selection")  # fmt: skip
        model_bytes = sum(layer.bytes for layer in self.layers)
        memory = {"upload_buffer_bytes_per_host": cfg.upload_buffers * model_bytes}
        if not cfg.federated.rule.streamed:  # the cohort's models, float64, on the aggregator
            memory["aggregator_memory_bytes"] = cfg.federated.cohort * 2 * model_bytes
        memory |= algorithm_class(cfg).host_memory(model_bytes, max(map(len, self.topology.clients_of_rank.values())))
        compression = cfg.exchange_compression
        if compression.on:  # error feedback: one model-sized memory per client a host has trained
            memory |= {"compress": compression.method.spec(), "error_feedback": compression.error_feedback}
        return super().describe() | {k: getattr(cfg, k) for k in keys} | memory
