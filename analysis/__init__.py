"""syncbench analysis: reads results files (HDF5) only. Imports neither mpi4py nor torch, so it runs on a
laptop holding just the files."""
