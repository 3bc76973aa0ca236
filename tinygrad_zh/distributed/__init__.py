"""Data-parallel training over MPI: run the same script as ``mpiexec -n 2 python train.py``.

Four pieces, one module each:

- ``collectives.py``: the process group (``init_process_group``, ``get_rank``,
  ``get_world_size``, ``barrier``, ``local_device``) and the collectives on
  tensors (``all_reduce``, ``broadcast``, ``all_gather``, ``reduce_scatter``):
  CPU tensors through MPI (mpi4py), GPU tensors through NCCL (CuPy); without
  mpi4py or ``mpiexec`` a script is a job of one rank.
- ``ddp.py``: ``DistributedDataParallel``, which keeps the model copies equal
  by averaging gradients in buckets that travel while backward still runs.
- ``sampler.py``: ``DistributedSampler``, a disjoint share of the data per rank.
- ``zero.py``: ``ZeroRedundancyOptimizer`` (ZeRO stage 1), the optimizer state
  split across the ranks instead of copied on each.

A training script changes in four lines::

    import tinygrad_zh.distributed as dist
    dist.init_process_group()
    model = dist.DistributedDataParallel(model)
    loader = DataLoader(data, batch_size=32, sampler=dist.DistributedSampler(data))

``pip install 'tinygrad_zh[dist]'`` brings mpi4py and MPICH (with ``mpiexec``).
"""
from .collectives import (INSTALL_HINT, ReduceOp, Work, abort, all_gather, all_gather_into_tensor,
                          all_gather_object, all_reduce, barrier, broadcast, get_backend,
                          get_rank, get_world_size, init_from_launcher, init_process_group,
                          is_initialized, is_main_process, local_device,
                          reduce_scatter, reduce_scatter_tensor)
from .ddp import DistributedDataParallel
from .sampler import DistributedSampler
from .zero import ZeroRedundancyOptimizer

# The short spellings, the same functions as PyTorch's names above.
init, rank, world_size = init_process_group, get_rank, get_world_size
