"""syncbench: benchmark the ways distributed and federated training keep model replicas in step.

Launch (one rank per process; see README.md)::

    mpiexec -n 8 python -m bench train --strategy ring --model cnn --dataset digits --steps 100
    mpiexec -n 2 python -m bench micro
    python -m bench info
"""

__version__ = "0.1.0"
