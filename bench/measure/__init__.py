"""Measuring and keeping results: per-layer clocks (timing), per-rank rows gathered to rank 0 (recorder), the
HDF5 writer (results), provenance, per-rank snapshots of decoupled runs, the summary a run prints, progress."""
