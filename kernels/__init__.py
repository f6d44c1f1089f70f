"""Point-to-point communication kernels for syncbench.

Kernels move numbers between ranks. They know buffers, communicators and the Topology, never models,
datasets or clocks: the driver in ``bench/`` times every kernel call, so compute and communication are
measured in one place for every strategy. The maths behind them (chunk bounds, averaging, weighting)
lives in :mod:`kernels.reference` as pure numpy functions that are tested on their own.
"""
