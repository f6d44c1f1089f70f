"""Whether the MPI library under mpi4py takes GPU memory (CUDA-aware MPI), and which path ``--gpu-path`` takes.

mpi4py 4.1 exposes no query for it, so the library's own extension is asked: ``MPIX_Query_cuda_support()``, which
Open MPI (``mpi-ext.h``, since 2.0) and MPICH (since 4.0) both export from libmpi, returns 1 when the library was
built with CUDA and the runtime supports CUDA buffers. It is looked up in the libmpi this process loaded (mpi4py
loads it privately, so by the path in ``/proc/self/maps``). A library without the symbol (MVAPICH2, Intel MPI, a
Cray MPICH) answers "unknown": ``--gpu-path device`` then runs at the user's word, ``auto`` stages on the host.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from bench.runtime.errors import UsageError

PATHS = ("auto", "host", "device")


@dataclass(frozen=True)
class CudaSupport:
    answer: bool | None  # None: the library does not say
    source: str  # how it was learned, for the summary and the file


def loaded_mpi_libraries(maps: str = "/proc/self/maps") -> list[str]:
    """The shared libraries named libmpi* mapped into this process (after mpi4py's MPI module is imported)."""
    try:
        lines = Path(maps).read_text().splitlines()
    except OSError:
        return []
    found = {line.split()[-1] for line in lines if "/libmpi" in line and ".so" in line}
    return sorted(path for path in found if Path(path).name.startswith("libmpi"))


def query_cuda_support(libraries: list[str] | None = None) -> CudaSupport:
    """Ask each loaded libmpi for ``MPIX_Query_cuda_support`` (MPI must be initialised)."""
    from mpi4py import MPI

    query = getattr(MPI, "Query_cuda_support", None)  # a later mpi4py may expose it
    if query is not None:
        return CudaSupport(bool(query()), "mpi4py MPI.Query_cuda_support()")
    for path in loaded_mpi_libraries() if libraries is None else libraries:
        try:
            symbol = ctypes.CDLL(path).MPIX_Query_cuda_support
        except (OSError, AttributeError):
            continue
        symbol.restype = ctypes.c_int
        return CudaSupport(bool(symbol()), f"MPIX_Query_cuda_support() in {Path(path).name}")
    return CudaSupport(None, "the MPI library has no MPIX_Query_cuda_support")


def device_path_blocker(cfg) -> str:
    """Why this run cannot hand device buffers to MPI ('' if it can): what still stages on the host."""
    if cfg.allreduce != "flat":
        return f"--allreduce {cfg.allreduce} reduces host buffers (use --allreduce flat)"
    if cfg.compress != "none":
        return "--compress compresses host buffers"
    if cfg.takes("localsgd") and not (cfg.outer_momentum == 0.0 and cfg.outer_lr == 1.0):
        return "SlowMo's outer update (--outer-momentum, --outer-lr) runs on host buffers"
    return ""


def choose_path(requested: str, device_type: str, support: CudaSupport, blocker: str = "") -> str:
    """``host`` (stage through pinned host buffers) or ``device`` (MPI reads the tensors where they are).

    On CPU the model's memory is host memory: ``device`` there hands MPI the tensors themselves instead of numpy
    copies (the path's code, testable without a GPU); ``auto`` stays on the numpy buffers. On CUDA ``auto`` takes
    ``device`` only where the library says it is CUDA-aware; ``device`` is taken at the user's word even where the
    library says no (Open MPI 5 can answer 0 until its CUDA support has seen a device buffer, open-mpi/ompi#11070;
    an Open MPI over a CUDA-capable UCX answers 0 too), with a warning (:meth:`GpuPath.warning`)."""
    if requested not in PATHS:
        raise UsageError(f"unknown gpu path '{requested}'; choose from: {', '.join(PATHS)}")
    if requested == "device" and blocker:
        raise UsageError(f"--gpu-path device: {blocker}")
    if requested == "host" or device_type != "cuda":
        return "device" if requested == "device" else "host"
    if requested == "auto":
        return "device" if support.answer and not blocker else "host"
    return "device"


@dataclass(frozen=True)
class GpuPath:
    """The path a run's buffers take to MPI (``staging`` in the results file and the summary)."""

    staging: str  # host | device
    support: CudaSupport

    @property
    def in_place(self) -> bool:
        return self.staging == "device"

    @classmethod
    def choose(cls, cfg, device) -> GpuPath:
        """From ``--gpu-path`` (a usage error where it cannot be had); the library is asked on CUDA only."""
        if device.type == "cuda":
            support = query_cuda_support()
        else:
            support = CudaSupport(None, "not asked (--device cpu)")
        return cls(choose_path(cfg.gpu_path, device.type, support, device_path_blocker(cfg)), support)

    def warning(self, device_type: str) -> str:
        """What rank 0 says before training when the device path was forced on a library that says no ('' else)."""
        if self.in_place and device_type == "cuda" and self.support.answer is False:
            return (
                f"syncbench: warning: --gpu-path device, and the MPI library says it is not CUDA-aware "
                f"({self.support.source} returned 0): if MPI cannot read GPU memory the run will crash; "
                "--gpu-path host (or auto) stages through host memory"
            )
        return ""

    def describe(self, cfg, in_flight: int | None = None) -> dict:
        """``in_flight``: the buckets actually in flight where the exchange does not use the pipeline (1)."""
        return {
            "staging": self.staging,
            "gpu_path_requested": cfg.gpu_path,
            "cuda_aware_mpi": {True: "yes", False: "no", None: "unknown"}[self.support.answer],
            "cuda_aware_source": self.support.source,
            "buckets_in_flight": cfg.buckets_in_flight if in_flight is None else in_flight,
        }
