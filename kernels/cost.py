"""Two-level cost of the all-reduce kernels: what each one sends on which link, in how many steps, priced with a
latency-bandwidth model per link (Hockney 1994: a message of n bytes takes alpha + n beta), one for messages inside
a node and one for messages between nodes.

Nodes: N nodes of K consecutive ranks (p = N K; uneven nodes are priced as N nodes of the largest K; nodes that
interleave ranks are not modelled). A node has
one outgoing link: messages that its ranks send across at the same time share it, so each of K simultaneous
messages of n bytes costs alpha + K n beta (the contention term; Sack & Gropp 2012 model NIC sharing the same way),
or alpha + n beta + (K - 1) n beta_shared where the link's shared part is known (:class:`Link`). A step of a ring
or doubling schedule ends when its slowest message has arrived.

- flat ring (:class:`kernels.ring_allreduce.RingAllreduce`, n >= the small-message switch): 2 (p - 1) steps of
  n / p bytes; with N > 1 one message per node boundary crosses in every step (no sharing), the others stay
  inside: 2 (p - 1) max(alpha_e + n / p beta_e, alpha_i + n / p beta_i). On one node: 2 (p - 1) (alpha_i + n / p
  beta_i).
- flat recursive doubling (below the switch): the kernel's own rounds (:func:`kernels.reference.doubling_plan`:
  the fold of a non-power-of-two count, log2 p' exchanges, the hand-back), each priced by its slowest message: a
  round in which S messages leave one node for others costs alpha_e + S n beta_e (with K a power of two only the
  log2 N longest-distance exchanges cross, with all K ranks of a node sending: S = K); a round inside nodes
  alpha_i + n beta_i.
- hierarchical, large (:class:`kernels.hierarchical.HierarchicalAllreduce`): reduce-scatter and all-gather inside
  the node, 2 (K - 1) (alpha_i + n / K beta_i); in between, each of the K chunks of n / K bytes is all-reduced
  among its N owners, the K rings in parallel through the node's link: a ring costs 2 (N - 1) steps of K
  simultaneous n / (N K)-byte messages, 2 (N - 1) (alpha_e + n / N beta_e); recursive doubling (chunks below the
  switch) doubling_steps(N) steps of K simultaneous n / K-byte messages, doubling_steps(N) (alpha_e + n beta_e).
- hierarchical, small: the node's ranks send to its first rank one after another, (K - 1) (alpha_i + n beta_i),
  the first ranks all-reduce by doubling, doubling_steps(N) (alpha_e + n beta_e), and send back, (K - 1) (alpha_i +
  n beta_i).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from kernels.reference import SMALL_BYTES, allreduce_algorithm, doubling_plan, doubling_steps


@dataclass(frozen=True)
class Link:
    """alpha: seconds per message; beta: seconds per byte of one message alone; shared_beta: the part of beta that
    messages sent at once through the link take in turn (the wire), the rest being each sender's own (copies on its
    host). None: all of it (a link measured one message at a time cannot tell them apart)."""

    alpha: float
    beta: float
    shared_beta: float | None = None

    def time(self, nbytes: float, sharing: int = 1) -> float:
        """One message of ``nbytes`` while ``sharing`` messages of that size use the link at once:
        alpha + n beta + (sharing - 1) n shared_beta."""
        shared = self.beta if self.shared_beta is None else self.shared_beta
        return self.alpha + nbytes * self.beta + (sharing - 1) * nbytes * shared


FREE = Link(0.0, 0.0)
"""A link that costs nothing: with it as the inside link, the model gives the inter-node time alone."""


def doubling_rounds(nodes: tuple[int, ...]) -> list[tuple[int, bool]]:
    """For recursive doubling over ranks on ``nodes`` (the node of each ring position), each round of its schedule
    (:func:`kernels.reference.doubling_plan`: the fold of a non-power-of-two count, the exchanges, the hand-back) as
    (the most messages one node sends across nodes in it, whether a message stays inside a node)."""
    p = len(nodes)
    plans = [doubling_plan(i, p) for i in range(p)]
    rounds: list[list[tuple[int, int]]] = []
    folds = [(i, i + 1) for i, (_, _, role) in enumerate(plans) if role == "give"]
    if folds:
        rounds.append(folds)
    for k in range(max((len(partners) for _, partners, _ in plans), default=0)):
        rounds.append([(i, partners[k]) for i, (_, partners, _) in enumerate(plans) if k < len(partners)])
    if folds:
        rounds.append([(b, a) for a, b in folds])
    priced = []
    for messages in rounds:
        leaving = Counter(nodes[a] for a, b in messages if nodes[a] != nodes[b])
        priced.append((max(leaving.values(), default=0), any(nodes[a] == nodes[b] for a, b in messages)))
    return priced


def flat_seconds(n: float, nodes: int, per_node: int, inside: Link, across: Link, small: int = SMALL_BYTES) -> float:
    """One flat all-reduce (ring, or recursive doubling below ``small``) of ``n`` bytes; a step or round takes its
    slowest message."""
    p = nodes * per_node
    algorithm = allreduce_algorithm(int(n), p, small)
    if algorithm == "none":
        return 0.0
    if algorithm == "ring":
        step = max(across.time(n / p), inside.time(n / p)) if nodes > 1 else inside.time(n / p)
        return 2 * (p - 1) * step
    layout = tuple(rank // per_node for rank in range(p))
    return sum(
        max(across.time(n, share) if share else 0.0, inside.time(n) if within else 0.0)
        for share, within in doubling_rounds(layout)
    )


def hierarchical_seconds(
    n: float, nodes: int, per_node: int, inside: Link, across: Link, small: int = SMALL_BYTES
) -> float:
    """One hierarchical all-reduce of ``n`` bytes (the kernel's large or small path, as it chooses)."""
    if nodes * per_node < 2 or n == 0:
        return 0.0
    if n < small:
        to_first_and_back = 2 * (per_node - 1) * inside.time(n)
        return to_first_and_back + doubling_steps(nodes) * across.time(n)
    in_node = 2 * (per_node - 1) * inside.time(n / per_node)
    chunk = n / per_node
    algorithm = allreduce_algorithm(int(chunk), nodes, small)
    if algorithm == "ring":
        between = 2 * (nodes - 1) * across.time(n / (nodes * per_node), per_node)
    elif algorithm == "doubling":
        between = doubling_steps(nodes) * across.time(chunk, per_node)
    else:
        between = 0.0
    return in_node + between


KERNELS = {"flat": flat_seconds, "hierarchical": hierarchical_seconds}


def cheaper(n: float, nodes: int, per_node: int, inside: Link, across: Link, small: int = SMALL_BYTES) -> str:
    """``flat`` or ``hierarchical``, whichever the model prices lower for ``n`` bytes (flat on a tie: one node)."""
    flat = flat_seconds(n, nodes, per_node, inside, across, small)
    return "hierarchical" if hierarchical_seconds(n, nodes, per_node, inside, across, small) < flat else "flat"
