"""Error feedback (Seide et al. 2014; Stich et al. 2018; Karimireddy et al. 2019): what compression dropped is kept
per bucket on the sender and added to the next step's input, so nothing is lost, only delayed:

    e_t = x_t + m_t,   p_t = C(e_t),   m_{t+1} = e_t - D(p_t)

and summed over steps, sum_t D(p_t) + m_T = sum_t x_t (telescoping). Memory: one float32 vector per bucket per
rank (per client for FedAvg uploads), the model's size in all.
"""

from __future__ import annotations

import numpy as np

from bench.compress.methods import Compressor
from bench.runtime.client_state import ClientDict
from bench.runtime.state import Stateful


class ErrorFeedback(Stateful):
    state_attributes = ("memory",)  # what a checkpoint keeps (bench.runtime.state)

    def __init__(self, compressor: Compressor, enabled: bool):
        self.compressor, self.enabled = compressor, enabled
        self.memory: dict[object, np.ndarray] = ClientDict()  # per client or bucket; checkpointed incrementally

    def compress(self, x: np.ndarray, key, draw=None) -> np.ndarray:
        """The payload for ``x`` (bucket or client ``key``), the residual kept for the next call."""
        if not self.enabled:
            return self.compressor.compress(x, draw)
        memory = self.memory.get(key)
        corrected = x + memory if memory is not None else x.copy()
        payload = self.compressor.compress(corrected, draw)
        np.subtract(corrected, self.compressor.decompress(payload, x.size), out=corrected)
        self.memory[key] = corrected
        return payload

    def residual_norm(self) -> float:
        """||m|| over every bucket (0 without error feedback): how much is still owed."""
        return float(np.sqrt(sum(float(np.dot(m, m)) for m in self.memory.values())))
