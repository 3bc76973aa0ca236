"""DistributedSampler: each rank reads its own, disjoint share of the data set.

Data parallelism only helps if the ranks see *different* samples: rank r takes
every world_size-th index of one shuffled order, starting at r. All ranks
shuffle with the same seed (``seed + epoch``), so they agree on the order
without talking to each other.

    >>> from tinygrad_zh.distributed import DistributedSampler
    >>> data = list(range(10))
    >>> [list(DistributedSampler(data, num_replicas=3, rank=r, shuffle=False)) for r in range(3)]
    [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]

Ten samples do not split into three equal shares, so, as in PyTorch, the order
is padded by repeating its first indices (0 and 1 above): every rank must run
the same number of steps, or the others would wait forever in a collective
for the one that ran out. ``drop_last=True`` drops the tail instead.

Where this differs from PyTorch: the shuffle uses NumPy's generator, so the
order is not PyTorch's (the rules — padding, drop_last, seed + epoch — are).
"""
import math

import numpy as np

from . import collectives


class DistributedSampler:
    """Indices of ``dataset`` for one rank; pass it as ``DataLoader(..., sampler=...)``.

    ``num_replicas`` and ``rank`` default to the process group's world size and
    rank. Call ``set_epoch(epoch)`` at the start of every epoch: without it the
    shuffled order is the same in every epoch.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if num_replicas is None:
            num_replicas = collectives.get_world_size()
        if rank is None:
            rank = collectives.get_rank()
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank {rank} is not in [0, {num_replicas - 1}] "
                             f"(num_replicas={num_replicas})")
        self.dataset = dataset
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last:
            self.num_samples = n // num_replicas   # the tail that does not divide is dropped
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n).tolist()
        else:
            order = list(range(n))
        if self.total_size > n:  # pad by repeating the order from its start (n may be tiny)
            order = (order * math.ceil(self.total_size / max(n, 1)))[:self.total_size]
        else:
            order = order[:self.total_size]
        return iter(order[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Reshuffle: epoch e uses the order drawn from ``seed + e`` (the same on every rank)."""
        self.epoch = epoch
