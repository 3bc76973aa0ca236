"""Kernels compiled by Numba for the CPU.

Importing this package (which every CPU kernel module does, before Numba is
imported) asks OpenMP to let idle worker threads sleep instead of spinning,
unless the user chose otherwise: ``OMP_WAIT_POLICY=PASSIVE``. Numba's parallel
loops (``prange``) run on OpenMP threads, and by default an idle thread spins
waiting for the next loop. On a machine shared with other processes a spinning
or descheduled thread holds everyone up at the end of each parallel loop: on
our 2-core development machine under load, one Adam step over 10M parameters
took 200-400 ms with spinning threads and 4-30 ms with sleeping ones.
(It must be set before OpenMP is loaded, i.e. before the first parallel
kernel runs; a process that loaded OpenMP earlier, e.g. through PyTorch,
keeps its policy.)
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
