"""``python -m bench micro`` and ``overhead``: the timing harness and its report (harness), the operations it
times (operations), torch.distributed on gloo for comparison (gloo), the cost of per-layer timing (overhead)."""
