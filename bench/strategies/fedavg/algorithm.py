"""The federated algorithm as hooks, in the shape of Flower's Strategy: configure the round (who takes part, with
what weight), the client's local objective and gradient, what a client sends beside its model, how each update is
folded into the aggregate, and the server's update of the global model. FedAvg is the base; each other algorithm
overrides the hooks it changes (FedProx, FedOpt here; SCAFFOLD and FedNova in :mod:`drift`; FedLAMA in
:mod:`fedlama`).

- FedAvg (McMahan et al. 2017, Algorithm 1): sample m = max(1, round(C K)) clients; plain local loss; fold
  w_k with weight n_k into a streaming weighted sum; x <- sum_k n_k w_k / sum_k n_k.
- ``--selection size`` (Li et al. 2020, scheme I): m draws with probability p_k, plain mean over the draws
  (:func:`sampling.sample_by_size`); ``--selection power-of-choice:D`` (Cho et al. 2022): D candidates, the m with
  the highest local loss kept by the aggregator (:mod:`choice`), plain mean.
- ``--aggregator`` median, trimmed, krum, multikrum (:mod:`robust`): the cohort's models kept, the rule applied.
- FedProx (Li et al. 2020, Eq. 2): local loss + mu/2 ||w - w_global||^2.
- FedOpt (Reddi et al. 2021, Algorithm 2): x <- server optimizer step on the pseudo-gradient avg - x
  (``aggregate.ServerOptimizer``: avgm, adam).
"""

from __future__ import annotations

import numpy as np

from bench.runtime.state import Stateful
from bench.strategies.fedavg.aggregate import ServerOptimizer, StreamingMean
from bench.strategies.fedavg.protocol import Head
from bench.strategies.fedavg.robust import CohortAggregate
from bench.strategies.fedavg.sampling import sample_by_size, sample_candidates, sample_clients


class FedAvg(Stateful):
    state_attributes: tuple[str, ...] = ()  # the server's and the hosts' state kept beside the model (none here)
    extra_download = False  # SCAFFOLD: a model-sized vector sent after the model (the server control variate)
    extra_upload = False  # SCAFFOLD: a model-sized vector sent after each client's model (its variate's change)
    updates_client_state = False  # FedDyn: end_client keeps per-client state on the host, with nothing to upload
    plans_layers = False  # FedLAMA: the server says each round which layers it sends and which come back

    # ---- facts known before the run (the strategy asks the class, not the name) ----------------------
    @classmethod
    def declare_series(cls, rec, layers: tuple[int]) -> None:
        """The algorithm's own per-round series (rank 0's rows); plain FedAvg records none."""

    @classmethod
    def host_memory(cls, model_bytes: int, clients_per_host: int) -> dict:
        """Memory the algorithm keeps beside the model on a client host, for ``strategy_info``; none here."""
        return {}

    def __init__(self, cfg, size: int, client_sizes=()):
        self.cfg, self.size = cfg, size
        self.client_sizes = list(client_sizes)  # n_k of every client (size-proportional selection)
        self.rule, self.selection = cfg.federated.rule, cfg.federated.selection
        self.draws: dict[int, int] = {}  # pragma: no mutate (set by configure_round before any weight is read)
        tiers = cfg.federated.tiers
        self.tier_of = tiers.assign(cfg.seed, cfg.clients) if tiers is not None else None  # --client-tiers
        self.offsets = np.zeros(1, dtype=np.int64)  # the flat model's layer boundaries (set_model)

    def set_model(self, offsets: np.ndarray) -> None:
        """The flat model's layer boundaries (``offsets[i]:offsets[i + 1]`` is layer i), before the first round."""
        self.offsets = offsets

    widths: tuple[float, ...] = ()  # per tier, the width ratio of the sub-model it trains (empty: the full model)

    def upload_offsets(self, k: int) -> np.ndarray | None:
        """Boundaries of client k's uploaded layers in its model's flat layout; None: the full model's."""
        return None

    def trained(self, k: int) -> np.ndarray | None:
        """Bool mask of the layers client k trains and uploads; None: every layer (FedAvg)."""
        return None

    def uploaded_bytes(self, k: int, layer_bytes: np.ndarray) -> int:
        """Bytes of model client k uploads (without compression): the layers it trains."""
        trained = self.trained(k)
        return int(layer_bytes.sum() if trained is None else layer_bytes[trained].sum())

    def tier_facts(self) -> dict[int, dict]:
        """Per tier, what the algorithm makes of it beyond the options (width ratios); none here."""
        return {}

    def tier(self, k: int) -> int | None:
        """Client k's tier (0 strong, 1 moderate, 2 weak); None without ``--client-tiers``."""
        return None if self.tier_of is None else int(self.tier_of[k])

    def compute_factor(self, k: int) -> float:
        """How many times as long client k's compute takes as measured: its tier's ``--tier-speed`` (1 without)."""
        return float(self.cfg.federated.tiers.speed[self.tier_of[k]]) if self.tier_of is not None else 1.0

    # ---- server side --------------------------------------------------------------------------------
    def configure_round(self, round_: int) -> np.ndarray:
        """Sorted ids of the clients sampled in ``round_`` (seeded: every rank computes the same)."""
        if self.selection.by_size:
            ids, counts = sample_by_size(self.cfg.seed, round_, self.client_sizes, self.cfg.fraction)
            self.draws = dict(zip(ids.tolist(), counts.tolist()))
            return ids
        if self.candidates:  # power-of-choice: the D candidates; the aggregator keeps m of them
            return sample_candidates(self.cfg.seed, round_, self.client_sizes, self.candidates)
        return sample_clients(self.cfg.seed, round_, self.cfg.clients, self.cfg.fraction)

    @property
    def candidates(self) -> int:
        """Power-of-choice's D (``--selection power-of-choice:D``); 0 for the other selections."""
        return self.selection.candidates

    def weight(self, head: np.ndarray) -> float:
        """A reporting client's weight in the mean: n_k; the times it was drawn (size-proportional); 1 for
        power-of-choice (its draw already follows p_k)."""
        if self.selection.by_size:
            return float(self.draws[int(head[Head.CLIENT])])
        if self.candidates:
            return 1.0
        return float(head[Head.SAMPLES])

    def new_aggregate(self):
        """O(model) streaming mean, or the whole cohort for a robust rule (``--aggregator``)."""
        return StreamingMean(self.size) if self.rule.streamed else CohortAggregate(self.rule, self.size)

    def fold(self, aggregate, update: np.ndarray, head: np.ndarray, extra: np.ndarray | None = None) -> None:
        """Fold one client's model (its header: ``protocol.Head``) into the round's aggregate as it arrives."""
        aggregate.add(update, self.weight(head))

    def fold_late(self, aggregate, update: np.ndarray, head: np.ndarray, extra: np.ndarray | None = None) -> None:
        """A client that trained but arrived after ``--deadline``: its model is left out of the round (nothing
        else to account for, unless the algorithm keeps per-client state in step with the server's)."""

    def server_update(self, x: np.ndarray, aggregate, round_: int) -> None:
        """The global model ``x`` (in place) from the round's aggregate."""
        x[:] = aggregate.mean()

    def end_round(self, aggregate, start: np.ndarray) -> None:
        """After the model's update, every round, even one whose models were all dropped or late: state the server
        keeps beside the model (SCAFFOLD's variate, FedDyn's h), from the round's aggregate and the global model
        ``start`` the round began from. Nothing for FedAvg."""

    def download_extra(self) -> np.ndarray | None:
        return None

    def round_plan(self, round_: int) -> tuple[np.ndarray, np.ndarray]:
        """(layers the server sends, layers averaged at the round's end): every layer, every round."""
        raise NotImplementedError("only algorithms with plans_layers plan their rounds")

    # ---- client side --------------------------------------------------------------------------------
    def begin_client(self, model, k: int = -1):
        """Before client k's local training, from the global model: state its objective needs (none)."""
        return None

    def client_loss(self, loss, model, state):
        """The local objective of one mini-batch, given the plain loss."""
        return loss

    def correct_gradients(self, model, state) -> None:
        """After the backward pass, before the optimizer step (SCAFFOLD's drift correction)."""

    def end_client(self, k: int, state, x: np.ndarray, y: np.ndarray, steps: int) -> np.ndarray | None:
        """After training: the vector uploaded beside the model (``extra_upload``), from the global model ``x``
        and the client's model ``y`` (flat float32)."""
        return None


class FedProx(FedAvg):
    def begin_client(self, model, k: int = -1):
        return [p.detach().clone() for p in model.parameters()]

    def client_loss(self, loss, model, anchor):
        prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
        return loss + 0.5 * self.cfg.fedprox_mu * prox


class FedOpt(FedAvg):
    state_attributes = ("optimizer",)  # the server optimizer's moments

    def __init__(self, cfg, size: int, client_sizes=()):
        super().__init__(cfg, size, client_sizes)
        self.optimizer = ServerOptimizer(cfg.server_opt, size, cfg.server_lr, cfg.server_momentum)

    def server_update(self, x: np.ndarray, aggregate, round_: int) -> None:
        self.optimizer.step(x, aggregate.mean())
