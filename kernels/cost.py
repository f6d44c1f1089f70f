"""Two-level cost of the all-reduce kernels: what each one sends on which link, in how many steps, priced with a
latency-bandwidth model per link (Hockney 1994: a message of n bytes takes alpha + n beta), one for messages inside
a node and one for messages between nodes.

Nodes: N nodes of K consecutive ranks (p = N K; uneven nodes are priced as N nodes of the largest K). A node has
one outgoing link: messages that its ranks send across at the same time share it, so K simultaneous messages of
n bytes cost alpha + K n beta (the contention term; Sack & Gropp 2012 model NIC sharing the same way). A step of a
ring or doubling schedule ends when its slowest message has arrived.

- flat ring (:class:`kernels.ring_allreduce.RingAllreduce`, n >= the small-message switch): 2 (p - 1) steps of
  n / p bytes; with N > 1 one message per node boundary crosses in every step (no sharing):
  2 (p - 1) (alpha_e + n / p beta_e). On one node: 2 (p - 1) (alpha_i + n / p beta_i).
- flat recursive doubling (below the switch): :func:`kernels.reference.doubling_steps` exchanges of n bytes;
  the rounds between partners on other nodes (ceil(log2 N) of them, the largest distances) have all K ranks of a
  node sending at once: alpha_e + K n beta_e each; the other rounds alpha_i + n beta_i. (Exact for powers of two
  with consecutive nodes; the fold of a non-power-of-two p is priced as inside rounds.)
- hierarchical, large (:class:`kernels.hierarchical.HierarchicalAllreduce`): reduce-scatter and all-gather inside
  the node, 2 (K - 1) (alpha_i + n / K beta_i); in between, each of the K chunks of n / K bytes is all-reduced
  among its N owners, the K rings in parallel through the node's link: a ring costs 2 (N - 1) (alpha_e + n / N
  beta_e), recursive doubling (chunks below the switch) doubling_steps(N) (alpha_e + n beta_e).
- hierarchical, small: the node's ranks send to its first rank one after another, (K - 1) (alpha_i + n beta_i),
  the first ranks all-reduce by doubling, doubling_steps(N) (alpha_e + n beta_e), and send back, (K - 1) (alpha_i +
  n beta_i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kernels.reference import SMALL_BYTES, allreduce_algorithm, doubling_steps


@dataclass(frozen=True)
class Link:
    """alpha: seconds per message; beta: seconds per byte."""

    alpha: float
    beta: float

    def time(self, nbytes: float, sharing: int = 1) -> float:
        """One message of ``nbytes`` while ``sharing`` messages of that size use the link at once."""
        return self.alpha + sharing * nbytes * self.beta


FREE = Link(0.0, 0.0)
"""A link that costs nothing: with it as the inside link, the model gives the inter-node time alone."""


def flat_seconds(n: float, nodes: int, per_node: int, inside: Link, across: Link, small: int = SMALL_BYTES) -> float:
    """One flat all-reduce (ring, or recursive doubling below ``small``) of ``n`` bytes."""
    p = nodes * per_node
    algorithm = allreduce_algorithm(int(n), p, small)
    if algorithm == "none":
        return 0.0
    if algorithm == "ring":
        return 2 * (p - 1) * (across if nodes > 1 else inside).time(n / p)
    rounds_across = math.ceil(math.log2(nodes))  # 0 on one node; never more than doubling_steps(p)
    rounds_inside = doubling_steps(p) - rounds_across
    return rounds_across * across.time(n, per_node) + rounds_inside * inside.time(n)


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
        between = 2 * (nodes - 1) * across.time(n / nodes)
    elif algorithm == "doubling":
        between = doubling_steps(nodes) * across.time(n)
    else:
        between = 0.0
    return in_node + between


KERNELS = {"flat": flat_seconds, "hierarchical": hierarchical_seconds}


def cheaper(n: float, nodes: int, per_node: int, inside: Link, across: Link, small: int = SMALL_BYTES) -> str:
    """``flat`` or ``hierarchical``, whichever the model prices lower for ``n`` bytes (flat on a tie: one node)."""
    flat = flat_seconds(n, nodes, per_node, inside, across, small)
    return "hierarchical" if hierarchical_seconds(n, nodes, per_node, inside, across, small) < flat else "flat"
