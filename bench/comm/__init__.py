"""What compression and the strategies both build on: host buffers for MPI (:mod:`bench.comm.staging`) and the
timed unit of communication a strategy hands its schedule (:mod:`bench.comm.exchange`). Below both, so that neither
imports the other's layer."""
