"""FedAvg uploads compressed: a client sends its model delta w_k - w (w: the global model it started the round
from), each layer compressed on its own, and the aggregator folds w + decompress(payload) into its streaming mean,
so its memory stays O(model).

Wire format of one client's upload (one message, after its header): L int64 payload lengths in bytes, then the L
layer payloads back to back (each in its method's format, :mod:`bench.compress.methods`). Error feedback keeps one
memory per client and layer on the host that trains the client, so it needs the client to stay on its host
(``--placement static``); its memory is up to (clients trained on the host) x model bytes. Random draws come from
the stream (seed, client, round, layer) (:data:`bench.workload.streams.Salt.COMPRESS`).
"""

from __future__ import annotations

import numpy as np

from bench.compress.feedback import ErrorFeedback
from bench.compress.methods import Compressor
from bench.measure.clocks import COMPRESSING
from bench.runtime.state import Stateful
from bench.workload.streams import Salt, stream


def join(payloads: list[np.ndarray]) -> np.ndarray:
    lengths = np.array([p.size for p in payloads], dtype=np.int64)
    return np.concatenate([lengths.view(np.uint8), *payloads])


def split(message: np.ndarray, layers: int) -> list[np.ndarray]:
    lengths = message[: 8 * layers].view(np.int64)
    ends = 8 * layers + np.cumsum(lengths)
    return [message[end - n : end] for n, end in zip(lengths, ends)]


class DeltaEncoder(Stateful):
    """A client host's side: each trained client's delta, compressed layer by layer."""

    state_attributes = ("feedback",)  # what a checkpoint keeps (bench.runtime.state)
    per_client = ("feedback/memory",)  # keyed by (client, layer) (bench.run.replacement)

    def __init__(self, compressor: Compressor, feedback: bool, seed: int):
        self.compressor, self.seed = compressor, seed
        self.feedback = ErrorFeedback(compressor, feedback)

    @COMPRESSING.timed
    def encode(self, client: int, round_: int, model: list[np.ndarray], start: list[np.ndarray]) -> np.ndarray:
        """The upload of ``client`` (its layers now, ``model``; the global model it started from, ``start``)."""
        payloads = []
        for i, (now, then) in enumerate(zip(model, start)):
            draw = stream(self.seed, client, round_, i, salt=Salt.COMPRESS) if self.compressor.draws else None
            payloads.append(self.feedback.compress(now - then, (client, i), draw))
        return join(payloads)

    @staticmethod
    def layer_bytes(message: np.ndarray, layers: int) -> np.ndarray:
        """Bytes of the message per layer: its payload and its length entry."""
        return message[: 8 * layers].view(np.int64) + 8


class DeltaDecoder:
    """The aggregator's side: the client's model w + decompress(delta), into ``out`` layer by layer."""

    def __init__(self, compressor: Compressor):
        self.compressor = compressor

    @COMPRESSING.timed
    def decode(self, message: np.ndarray, start: list[np.ndarray], out: list[np.ndarray]) -> None:
        for payload, then, into in zip(split(message, len(start)), start, out):
            np.add(then, self.compressor.decompress(payload, then.size), out=into)
