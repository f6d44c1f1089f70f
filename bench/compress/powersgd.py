"""PowerSGD (Vogels, Karimireddy & Jaggi, NeurIPS 2019, Algorithm 1 with error feedback and warm start): a rank-r
approximation of each gradient matrix from one step of subspace iteration, averaged with two all-reduces of small
matrices instead of one of the gradient.

Per matrix M (a weight of shape (n, ...) viewed as n x m, plus the error-feedback memory e):

    M <- grad + e;  P = M Q;  P <- mean over ranks (all-reduce);  P <- orthogonalise(P)
    Q = M^T P;  Q <- mean over ranks (all-reduce);  approx = P Q^T;  e <- M - approx

Q is kept from the previous step (warm start) and starts as the same seeded Gaussian on every rank. Vectors
(biases, norms) and matrices too small to gain (r (n + m) >= n m) go uncompressed, averaged in the first
all-reduce beside the P's, as PyTorch's ``powerSGD_hook`` does. Sends r (n + m) floats per matrix instead of n m.
"""

from __future__ import annotations

import numpy as np

from bench.compress.methods import Compressor
from bench.runtime.state import Stateful
from bench.workload.streams import Salt, stream


class PowerSGD(Compressor):
    name, biased, needs_allreduce = "powersgd", True, True

    def __init__(self, rank: int):
        self.rank = rank

    def spec(self):
        return f"powersgd:{self.rank}"


def _as_matrix(shape: tuple[int, ...], size: int) -> tuple[int, int] | None:
    """(n, m) for a weight of shape (n, ...) seen as n x m; None for a vector (bias, norm)."""
    return (shape[0], size // shape[0]) if len(shape) >= 2 else None  # pragma: no mutate (n x 1 never gains)


class PowerSGDAverage(Stateful):
    """One bucket's PowerSGD average. ``shapes``: its tensors' shapes in packing order; ``allreduce(buf, key)``
    sums a float32 buffer over the ranks in place."""

    state_attributes = ("q", "memory")  # what a checkpoint keeps (bench.runtime.state)

    def __init__(self, rank: int, shapes: list[tuple[int, ...]], seed: int, key: int, error_feedback: bool):
        self.r, self.key, self.error_feedback = rank, key, error_feedback
        self.matrices, self.dense = [], []  # (offset, n, m) | (offset, size)
        offset = 0
        for shape in shapes:
            size = int(np.prod(shape))
            matrix = _as_matrix(shape, size)
            if matrix and rank * sum(matrix) < size:  # r (n + m) < n m: the factors are smaller
                self.matrices.append((offset, *matrix))
            else:
                self.dense.append((offset, size))
            offset += size
        self.q = [
            stream(seed, key, j, salt=Salt.COMPRESS).standard_normal((m, rank)).astype(np.float32)
            for j, (_, _, m) in enumerate(self.matrices)
        ]
        self.memory = np.zeros(offset, dtype=np.float32) if error_feedback else None
        self.p_len = sum(n * rank for _, n, _ in self.matrices) + sum(size for _, size in self.dense)
        self.q_len = sum(m * rank for _, _, m in self.matrices)

    def __call__(self, buf: np.ndarray, allreduce, ranks: int) -> list[int]:
        """Replace ``buf`` (this rank's gradients) by the PowerSGD average; the sizes (floats) all-reduced."""
        if self.memory is not None:
            buf += self.memory
        views = [buf[o : o + n * m].reshape(n, m) for o, n, m in self.matrices]
        first = np.empty(self.p_len, dtype=np.float32)
        at = 0
        for view, q in zip(views, self.q):
            np.matmul(view, q, out=first[at : at + view.shape[0] * self.r].reshape(view.shape[0], self.r))
            at += view.shape[0] * self.r
        for o, size in self.dense:
            first[at : at + size] = buf[o : o + size]
            at += size
        allreduce(first, 2 * self.key)
        first /= ranks
        second, ps, at = np.empty(self.q_len, dtype=np.float32), [], 0
        for view in views:
            p = np.linalg.qr(first[at : at + view.shape[0] * self.r].reshape(view.shape[0], self.r))[0]
            ps.append(p.astype(np.float32))  # pragma: no mutate (qr of float32 is float32 already)
            at += view.shape[0] * self.r
        self._fill_second(views, ps, second)
        allreduce(second, 2 * self.key + 1)
        second /= ranks
        self._rebuild(buf, views, ps, second, first, at)
        return [first.size, second.size]

    def _fill_second(self, views, ps, second) -> None:
        at = 0
        for view, p in zip(views, ps):
            np.matmul(view.T, p, out=second[at : at + view.shape[1] * self.r].reshape(view.shape[1], self.r))
            at += view.shape[1] * self.r

    def _rebuild(self, buf, views, ps, second, first, dense_at) -> None:
        """buf <- the averaged approximation (dense parts: their average); memory <- what it left out."""
        at = 0
        for j, (view, p) in enumerate(zip(views, ps)):
            q = second[at : at + view.shape[1] * self.r].reshape(view.shape[1], self.r)
            self.q[j] = q.copy()  # warm start
            approx = p @ q.T
            if self.memory is not None:
                o, n, m = self.matrices[j]
                self.memory[o : o + n * m] = (view - approx).ravel()
            view[...] = approx
            at += view.shape[1] * self.r
        for o, size in self.dense:
            buf[o : o + size] = first[dense_at : dense_at + size]
            dense_at += size

    def residual_norm_sq(self) -> float:
        return float(np.dot(self.memory, self.memory)) if self.memory is not None else 0.0
