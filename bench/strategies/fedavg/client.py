"""A client-host rank's side of a FedAvg round: download the global model (per layer, timed), train each of its
sampled clients from it (E local epochs, batch B, optional FedProx term; per-layer forward/backward timed by the
same hooks as every strategy), and upload each client's model with its sample count (per layer, timed).

One message per sampled client goes to the aggregator, in client-id order (wire format: :mod:`protocol`): a
header and, if the status is OK, the model layer by layer. A dropped client (``--dropout``) sends only its
header.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from mpi4py import MPI

from bench.comm.staging import HostStaging
from bench.compress.uploads import DeltaEncoder
from bench.runtime.client_state import ClientDict
from bench.runtime.state import Stateful
from bench.strategies.fedavg.choice import exchange_losses, local_loss
from bench.strategies.fedavg.client_upload import Uploading
from bench.strategies.fedavg.drift import fednova_normaliser
from bench.strategies.fedavg.local import Trained, local_batches
from bench.strategies.fedavg.partials import Report, node_tree
from bench.strategies.fedavg.protocol import ClientStatus, client_header, model_tag, plan_tag
from bench.strategies.fedavg.replica import Replica, replica_of
from bench.strategies.fedavg.sampling import drops_out, speed_factor
from bench.strategies.fedavg.uploads import UploadBuffers
from bench.workload.models import load_flat
from bench.workload.optim import make_optimizer, set_lr
from kernels.tags import tag_upper_bound
from kernels.waiting import probe


class ClientHost(Uploading, Stateful):
    state_attributes = ("kept", "encoder")  # FedLAMA's kept models, error-feedback memories per client
    per_client = ("kept",)  # dicts keyed by client id (bench.run.replacement)

    def __init__(self, cfg, comm: MPI.Comm, run, clients: tuple[int, ...], timer, sigma: float, algorithm):
        self.cfg, self.comm, self.run, self.timer, self.sigma = cfg, comm, run, timer, sigma
        self.algorithm = algorithm
        self.round_hosts: list[int] = []  # ranks hosting the round's sampled clients (the tree's members)
        self.nodes: tuple[int, ...] = ()  # the node of every rank (the strategy's topology), for the tree
        self.layers = run.layers
        self.staging = HostStaging(run.layers, run.device)
        self.tag_ub = tag_upper_bound(comm)
        self.data = {}
        for k in clients:
            self.client_data(k)
        self.global_values = [np.empty_like(b) for b in self.staging.numpy]
        self._params = [p for layer in self.layers for p in layer.params]
        self._global_views = self._views_of_global()
        self.optimizer = make_optimizer(run.model.parameters(), cfg)  # one per host, its state cleared for each client
        self.model = run.model  # the current client's (the run's, or its tier's sub-model: _use)
        self._full = Replica(run.model, run.layers, self.staging, self.optimizer, timer)
        self._replica, self.replicas = self._full, {}  # per tier with a width-reduced sub-model
        sizes = [b.size for b in self.staging.numpy]
        self.model_size = sum(sizes)
        self._byte_share = np.array(sizes, dtype=np.float64) / self.model_size  # each layer's share of the model
        self.scratch = np.empty(self.model_size, dtype=np.float64) if cfg.aggregation == "tree" else None
        self.uploads = UploadBuffers(comm, sizes, cfg.upload_buffers, self.tag_ub) if cfg.upload_buffers else None
        compression = cfg.exchange_compression
        self.encoder = (
            DeltaEncoder(compression.method, compression.error_feedback, cfg.seed) if compression.on else None
        )
        self.attack, self.attackers = cfg.federated.attack, set()
        self.round_sampled: list[int] = []  # every client sampled in the round (the attackers are drawn from them)
        self.extra: np.ndarray | None = None  # the last client's upload beside its model (SCAFFOLD's dc_i)
        n_layers = len(self.layers)
        self.fresh = np.ones(n_layers, dtype=bool)  # layers received this round (FedLAMA: the rest stay local)
        self.averaged = np.ones(n_layers, dtype=bool)  # layers uploaded at the round's end
        self.uploading = self.averaged  # the current client's: averaged, less what its tier leaves untrained
        self.kept: dict[int, np.ndarray] = ClientDict()  # FedLAMA: each cohort client's model between rounds of a block
        self._plan = np.empty(2 * n_layers, dtype=np.int8)
        self._param_layer = [i for i, layer in enumerate(self.layers) for _ in layer.params]
        self._fwd = np.zeros(len(self.layers))
        self._bwd = np.zeros(len(self.layers))
        self._warm_up(clients)

    def client_data(self, k: int):
        """Client k's samples on this rank's device (loaded on first use: with --placement balanced a rank trains
        clients of other blocks too; every rank holds the whole training set)."""
        if k not in self.data:
            idx = self.run.parts[k]
            x = torch.from_numpy(np.ascontiguousarray(self.run.dataset.x_train[idx])).to(self.run.device)
            y = torch.from_numpy(np.ascontiguousarray(self.run.dataset.y_train[idx])).to(self.run.device)
            self.data[k] = (x, y)
        return self.data[k]

    def _warm_up(self, clients) -> None:
        """One untimed forward/backward and optimizer step before round 0 (no update). A process's first optimizer
        step pays seconds of one-time set-up (measured: ~4 s per host on this 2-core machine); in FedAvg each host
        would pay it in the first round it is sampled in, which made those rounds 50x slower than the rest."""
        if not clients:
            return
        x, y = self.client_data(clients[0])
        n = min(len(y), self.cfg.batch_size)
        self.timer.start_backward()
        F.cross_entropy(self.model(x[:n]), y[:n]).backward()
        self.timer.collect(self._fwd, self._bwd)
        torch.optim.SGD(self.model.parameters(), lr=0.0).step()  # the first optimizer step is slow too
        self.model.zero_grad(set_to_none=True)

    def use_sub_models(self, subs: dict, clients) -> None:
        """``--fl-algorithm width``: a replica per tier with a sub-model (``replica.sub_models``), warmed up."""
        for tier, (model, indices) in subs.items():
            self.replicas[tier] = replica_of(self.cfg, self.run, model, indices)
            self._use(self.replicas[tier])
            self._warm_up(clients)
        self._use(self._full)

    def _use(self, replica: Replica) -> None:
        """Train the next client on ``replica``: its model, layers, staging, optimizer and timer."""
        self._replica, self.model, self.layers = replica, replica.model, replica.layers
        self.staging, self.optimizer, self.timer = replica.staging, replica.optimizer, replica.timer
        self._params = replica.params

    def _views_of_global(self) -> list[torch.Tensor]:
        """Each parameter's slice of the global-model receive buffers, shaped like the parameter (on its device)."""
        views = []
        for values, layer in zip(self.global_values, self.layers):
            whole, off = torch.from_numpy(values), 0
            for p in layer.params:
                views.append(whole[off : off + p.numel()].view(p.shape))
                off += p.numel()
        return views

    def download(self, row_comm: np.ndarray, row_bytes: np.ndarray, row_down: np.ndarray) -> float:
        """Receive the global model; returns the seconds spent waiting for the round to start (not transfer)."""
        t = time.perf_counter()
        if self.algorithm.plans_layers:  # FedLAMA: which layers come now, and which go back at the round's end
            probe(self.comm, 0, plan_tag(self.tag_ub))
            waited = time.perf_counter() - t
            self.comm.Recv(self._plan, 0, plan_tag(self.tag_ub))
            self.fresh, self.averaged = self._plan.reshape(2, -1).astype(bool)
        else:
            probe(self.comm, 0, model_tag(0, self.tag_ub))
            waited = time.perf_counter() - t
        for i, buf in enumerate(self.global_values):
            if not self.fresh[i]:
                continue
            t = time.perf_counter()
            self.comm.Recv(buf, 0, model_tag(i, self.tag_ub))
            dt = time.perf_counter() - t
            row_down[i] += dt
            row_comm[i] += dt
            row_bytes[i] += buf.nbytes
        if self.algorithm.extra_download:  # SCAFFOLD: the server's control variate, into the algorithm's copy
            t = time.perf_counter()
            self.comm.Recv(self.algorithm.c, 0, model_tag(len(self.global_values), self.tag_ub))
            dt = (time.perf_counter() - t) * self._byte_share
            row_down += dt
            row_comm += dt
            row_bytes += [b.nbytes for b in self.global_values]
        return waited

    def _load_global(self, k: int) -> None:
        """The model's parameters from the received global model: one copy per tensor, straight from the receive
        buffers (they are this host's only copy of the global model for the round). FedLAMA: layers not received
        this round come from client k's own model of the previous round (or, if it has none, from the last values
        received for them: the block's start)."""
        if self._replica.indices is not None:  # a width-reduced sub-model: the global model's leading slices
            self._replica.load(np.concatenate(self.global_values))
            return
        kept, off = self.kept.get(k), 0
        with torch.no_grad():
            for param, values, layer in zip(self._params, self._global_views, self._param_layer):
                if kept is None or self.fresh[layer]:
                    param.copy_(values)
                else:
                    param.copy_(torch.from_numpy(kept[off : off + param.numel()]).view(param.shape))
                off += param.numel()

    def train(self, k: int, round_: int, fwd_row: np.ndarray, bwd_row: np.ndarray) -> Trained:
        """Client ``k``'s local training from the global model (:func:`local_batches`: E epochs, or T steps),
        then the algorithm's end-of-client hook (SCAFFOLD's variate) and, for a simulated attacker, its update."""
        tier = self.algorithm.tier(k)
        self._use(self.replicas.get(tier, self._full))
        cfg, model = self.cfg, self.model
        self._load_global(k)
        trained = self.algorithm.trained(k)
        self._train_only(trained)
        self.uploading = self.averaged if trained is None else self.averaged & trained
        x, y = self.client_data(k)
        n = len(y)
        opt = self.optimizer
        opt.state.clear()  # a fresh optimizer for each client (momentum buffers start empty), without rebuilding it
        set_lr(opt, cfg, round_, cfg.rounds)  # a client's rate follows the round
        state = self.algorithm.begin_client(model, k)
        losses = []
        before = fwd_row.sum(), bwd_row.sum()
        t0 = time.perf_counter()
        for order in local_batches(cfg, k, round_, n):
            idx = torch.from_numpy(order).to(x.device)
            opt.zero_grad(set_to_none=True)
            loss = self.algorithm.client_loss(F.cross_entropy(model(x[idx]), y[idx]), model, state)
            self.timer.start_backward()
            loss.backward()
            self.timer.collect(self._fwd, self._bwd)
            fwd_row += self._fwd
            bwd_row += self._bwd
            self.algorithm.correct_gradients(model, state)
            opt.step()
            losses.append(loss.item())
        if self.run.device.type == "cuda":
            torch.cuda.synchronize()
        compute_s, steps = time.perf_counter() - t0, len(losses)
        self.extra = None
        if self.algorithm.extra_upload or self.algorithm.updates_client_state or self.attackers:
            self.extra = self._after_training(k, round_, state, steps)
        if self.algorithm.plans_layers:  # FedLAMA: keep the model while some layers stay local
            if self.averaged.all():
                self.kept.pop(k, None)
            else:
                self.kept[k] = self._model_flat()
        normaliser = fednova_normaliser(steps, cfg.momentum, cfg.lr * cfg.fedprox_mu)
        phases = fwd_row.sum() - before[0], bwd_row.sum() - before[1]
        return Trained(k, float(np.mean(losses)), compute_s, n, steps, normaliser, *map(float, phases))

    def _train_only(self, trained: np.ndarray | None) -> None:
        """Layers outside ``trained`` (a weaker tier's leading ones) stop requiring gradients: autograd builds no
        graph through them, they get no gradient and the optimizer skips them (torch steps only parameters with
        a gradient); None: every layer trains."""
        for layer in self.layers:
            wanted = trained is None or bool(trained[layer.index])
            for p in layer.params:
                p.requires_grad_(wanted)

    def _after_training(self, k: int, round_: int, state, steps: int) -> np.ndarray | None:
        """SCAFFOLD's variate change (from the honest model), then a simulated attacker's replaced update."""
        x = np.concatenate(self.global_values)
        y = self._model_flat()
        extra = self.algorithm.end_client(k, state, x, y, steps)
        if k in self.attackers:
            load_flat(self._params, x + self.attack.corrupt(y - x, self.cfg.seed, round_, k))
        return extra

    def _choose(self, candidates: list[int], rec, round_: int) -> list[int]:
        """Power-of-choice: this host's candidates' losses on the global model to rank 0, and back the ids of
        those it must train (:mod:`choice`)."""
        t = time.perf_counter()
        self._use(self._full)
        self._load_global(-1)
        losses = {k: local_loss(self.model, *self.client_data(k), self.cfg.batch_size) for k in candidates}
        chosen, sent = exchange_losses(self.comm, losses, self.tag_ub)
        rec["fedavg/select"][round_] += time.perf_counter() - t
        self._count_bytes(rec, round_, sent)
        return chosen

    def _model_flat(self) -> np.ndarray:
        return torch.cat([p.detach().reshape(-1) for p in self._params]).cpu().numpy()

    def run_round(self, round_: int, sampled: list[int], rec) -> None:
        """Download once, then train each sampled client of this host and report it (into the Recorder's row
        ``round_``): each client's model to the aggregator (``--aggregation client``), or one partial sum for the
        host (``host``) or the round's tree (``tree``)."""
        comm_row, bytes_row, pull_row = (
            rec[name][round_] for name in ("timing/comm", "timing/comm_bytes", "fedavg/download")
        )
        rec["timing/wait"][round_] += self.download(comm_row, bytes_row, pull_row)
        if self.algorithm.candidates:
            sampled = self._choose(sampled, rec, round_)
        got = time.perf_counter()
        report = Report(self.model_size) if self.cfg.aggregation != "client" else None
        losses = []
        self.attackers = self.attack.attackers(self.cfg.seed, round_, self.round_sampled) if self.attack else set()
        for k in sampled:
            if drops_out(self.cfg.seed, round_, k, self.cfg.dropout):
                if report is None:
                    self.send(client_header(k, ClientStatus.DROPPED), rec, round_, with_model=False)
                else:
                    report.records.append((k, self.comm.rank, 0, int(ClientStatus.DROPPED), 0, 0, 0, 0, 0, 0))
                continue
            done = self.train(k, round_, rec["timing/forward"][round_], rec["timing/backward"][round_])
            factor = speed_factor(self.cfg.seed, k, self.sigma) * self.algorithm.compute_factor(k)
            slow = (factor - 1.0) * done.compute_s
            if slow > 0:
                time.sleep(slow)
                rec["timing/injected"][round_] += slow
            losses.append(done.loss)
            if report is None:
                self.send(done.header(slow), rec, round_, with_model=True)
            else:
                self.fold(report, done, slow, time.perf_counter() - got, rec, round_)
        if report is not None and sampled:  # power-of-choice may leave a host nothing to report
            self.deliver(report, round_, rec)
        elif self.uploads is not None:
            self._share(rec, round_, self.uploads.drain())
        rec["metrics/loss"][round_] = float(np.mean(losses)) if losses else np.nan

    def fold(self, report: Report, done: Trained, slow: float, ready_s: float, rec, round_: int) -> None:
        """Host-side aggregation: a client ready later than --deadline after the model arrived is late (left out);
        otherwise its model goes into the host's weighted partial sum."""
        k, n, compute_s, loss = done.client, done.samples, done.compute_s, done.loss
        state = ClientStatus.LATE if ready_s > self.cfg.deadline else ClientStatus.OK
        if state == ClientStatus.OK:
            t = time.perf_counter()
            for i in range(len(self.layers)):
                self.staging.pack(i, grads=False)  # fills self.staging.flat, the model as one vector
            rec["timing/pack"][round_] += (time.perf_counter() - t) * self._byte_share
            self.algorithm.fold(report.partial, self.staging.flat, done.header(slow))
        report.records.append((k, self.comm.rank, n, int(state), compute_s, slow, loss, ready_s, *done.phases))

    def deliver(self, report: Report, round_: int, rec) -> None:
        """Send the report to the aggregator; in a tree, first take in the reports of this host's children."""
        dest = 0
        if self.cfg.aggregation == "tree":
            children, parent = node_tree(self.comm.rank, self.round_hosts, self.nodes)
            t = time.perf_counter()
            for child in children:
                report.receive_from(self.comm, child, self.tag_ub, self.scratch)
            rec["timing/wait"][round_] += time.perf_counter() - t
            dest = parent if parent is not None else 0
        t = time.perf_counter()
        MPI.Request.Waitall(report.send(self.comm, dest, self.tag_ub))
        self._share(rec, round_, time.perf_counter() - t)
        self._count_bytes(rec, round_, report.nbytes)
