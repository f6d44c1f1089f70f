"""Parameter-server pushes compressed: each shard piece a worker pushes is compressed on its own (error feedback
per piece on the worker; random draws from (seed, worker rank, step, piece)), and the server receives it into a
byte buffer of the piece's payload size and decompresses it into its gradient buffer before averaging. Every
method here has a payload size fixed by the piece's length, so the server posts its receives ahead exactly as for
uncompressed pieces (no probing); pulls (parameters) stay float32.
"""

from __future__ import annotations

import numpy as np

from bench.compress.feedback import ErrorFeedback
from bench.compress.methods import Compressor, payload_size
from bench.measure.clocks import COMPRESSING
from bench.runtime.state import Stateful
from bench.workload.streams import Salt, stream


class PieceEncoder(Stateful):
    state_attributes = ("feedback",)  # what a checkpoint keeps (bench.runtime.state)

    def __init__(self, compressor: Compressor, feedback: bool, seed: int, rank: int):
        self.compressor, self.seed, self.rank = compressor, seed, rank
        self.feedback = ErrorFeedback(compressor, feedback)

    @COMPRESSING.timed
    def encode(self, piece: int, step: int, values: np.ndarray) -> np.ndarray:
        draw = stream(self.seed, self.rank, step, piece, salt=Salt.COMPRESS) if self.compressor.draws else None
        return self.feedback.compress(values, piece, draw)


class PieceDecoder:
    """The server's side: a byte buffer per (gradient buffer, piece), decoded into the gradient buffer."""

    def __init__(self, compressor: Compressor, pieces: list[tuple[int, slice]]):
        self.compressor, self.pieces = compressor, pieces
        self.sizes = [payload_size(compressor, sl.stop - sl.start) for _, sl in pieces]
        self._wire: dict[int, list[np.ndarray]] = {}  # id(gradient buffer) -> its pieces' byte buffers

    def wire_for(self, grad: np.ndarray) -> list[np.ndarray]:
        if id(grad) not in self._wire:
            self._wire[id(grad)] = [np.empty(n, dtype=np.uint8) for n in self.sizes]
        return self._wire[id(grad)]

    def decode(self, grad: np.ndarray) -> None:
        for raw, (_, sl) in zip(self._wire[id(grad)], self.pieces):
            grad[sl] = self.compressor.decompress(raw, sl.stop - sl.start)
