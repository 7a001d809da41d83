"""Thread counts for the benchmarks, set before numpy or torch is imported (BLAS and OpenMP read them on load).

One thread by default: on a small shared machine, threaded BLAS (and torch's spinning OpenMP workers next to it)
turns other processes' load into 10x swings; one thread compares the contenders' own work.

XLA's CPU runtime sizes its thread pool to the cores the process may run on and ignores the thread flags (JAX
ran on two cores with them set), so the process is also pinned to its first N cores where the OS allows it:
every contender then gets the same N cores.
"""
import os


def threads_from_argv(argv) -> int:
    """``--threads N`` (or ``--threads=N``) from the command line, else 1; exported to BLAS and OpenMP."""
    n = 1
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif arg.startswith("--threads="):
            n = int(arg.split("=", 1)[1])
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={str(n > 1).lower()} "
                                       f"intra_op_parallelism_threads={n}")
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if n < len(cores):
            os.sched_setaffinity(0, cores[:n])
    return n
