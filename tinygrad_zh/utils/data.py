"""Data sets and the DataLoader that cuts them into shuffled mini-batches.

Three ideas, as in ``torch.utils.data``:

- a **Dataset** answers ``len(ds)`` and ``ds[i]`` (one sample, e.g. ``(image, label)``);
- a **Sampler** says in which order to visit the indices, a **BatchSampler**
  groups them into lists of ``batch_size``;
- the **DataLoader** fetches each list of indices and *collates* the samples
  into batch tensors.

    >>> import tinygrad_zh as tg
    >>> from tinygrad_zh.utils.data import DataLoader, TensorDataset
    >>> ds = TensorDataset(tg.randn(10, 3), tg.arange(10))
    >>> [(x.shape, y.tolist()) for x, y in DataLoader(ds, batch_size=4)]
    [((4, 3), [0, 1, 2, 3]), ((4, 3), [4, 5, 6, 7]), ((2, 3), [8, 9])]

The fast path: fetching a batch of 128 samples one ``ds[i]`` at a time and
stacking them costs 128 Python calls; an in-memory dataset can instead pick
the whole batch with one fancy index, ``data[indices]``. A dataset offers this
by defining ``__getitems__(indices)``. Where we differ from PyTorch: our
``__getitems__`` returns the batch *already collated* (PyTorch's returns a list
of samples that it then collates), so the DataLoader uses it directly when no
``collate_fn`` is given; with a ``collate_fn`` it falls back to ``ds[i]``.

Randomness (shuffling, ``random_split``) comes from a NumPy ``Generator`` you
pass as ``generator``, or else from tinygrad_zh's global one, which
``tg.manual_seed`` reseeds.
"""
import bisect
import collections.abc
import math

import numpy as np

from .. import creation
from ..tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split",
           "Sampler", "SequentialSampler", "RandomSampler", "BatchSampler",
           "DataLoader", "default_collate"]


# ------------------------------------------------------------------ data sets
class Dataset:
    """A map-style data set: subclasses define ``__getitem__(i)`` and ``__len__()``.

    ``a + b`` concatenates two data sets, as in PyTorch.
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are the rows of tensors with the same first dimension.

        >>> import tinygrad_zh as tg
        >>> ds = TensorDataset(tg.zeros(5, 3), tg.arange(5))
        >>> x, y = ds[2]
        >>> x.shape, y.item(), len(ds)
        ((3,), 2, 5)
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor")
        if not all(isinstance(t, Tensor) for t in tensors):
            kinds = [type(t).__name__ for t in tensors]
            raise TypeError(f"TensorDataset: expects tensors, got {kinds}")
        sizes = [t.shape[0] if t.ndim else None for t in tensors]
        if None in sizes or len(set(sizes)) != 1:
            raise ValueError(f"TensorDataset: all tensors need the same first dimension "
                             f"(one row per sample), got shapes {[t.shape for t in tensors]}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices):
        """The whole batch with one fancy index per tensor (the fast path)."""
        indices = np.asarray(indices, dtype=np.int64)
        return tuple(Tensor._make(t.data[indices]) for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __getitem__(self, index):
        if isinstance(index, (list, np.ndarray)):
            return self.dataset[[self.indices[i] for i in index]]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)

    def __getattr__(self, name):
        # Offer the fast path exactly when the underlying data set does.
        if name == "__getitems__" and hasattr(self.dataset, "__getitems__"):
            return lambda indices: self.dataset.__getitems__([self.indices[i] for i in indices])
        raise AttributeError(f"'Subset' object has no attribute {name!r}")


class ConcatDataset(Dataset):
    """Several data sets one after the other.

        >>> import tinygrad_zh as tg
        >>> ds = ConcatDataset([TensorDataset(tg.arange(3)), TensorDataset(tg.arange(10, 12))])
        >>> len(ds), ds[3][0].item()
        (5, 10)
    """

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: the list of data sets is empty")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]))

    def __len__(self):
        return int(self.cumulative_sizes[-1])

    def __getitem__(self, index):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"ConcatDataset: index out of range for {len(self)} samples")
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping random Subsets of the given lengths.

    ``lengths`` are counts summing to ``len(dataset)``, or fractions summing to
    1 (as in PyTorch: floors first, then one extra sample to the first parts
    until the counts add up).

        >>> import numpy as np, tinygrad_zh as tg
        >>> train, val = random_split(TensorDataset(tg.arange(10)), [0.8, 0.2],
        ...                           generator=np.random.default_rng(0))
        >>> len(train), len(val), sorted(train.indices + val.indices) == list(range(10))
        (8, 2, True)
    """
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = [math.floor(n * frac) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n or any(length < 0 for length in lengths):
        raise ValueError(f"random_split: lengths {lengths} must be non-negative and sum to "
                         f"the data set's length {n} (or be fractions summing to 1)")
    order = _rng(generator).permutation(n).tolist()
    offsets = np.cumsum([0] + lengths)
    return [Subset(dataset, order[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]


# ------------------------------------------------------------------ samplers
class Sampler:
    """Yields indices into a data set. Subclasses define ``__iter__`` and ``__len__``."""

    def __init__(self, data_source=None):
        self.data_source = data_source

    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """0, 1, 2, ... in order."""

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh random permutation each time it is iterated.

    The permutation is drawn when ``iter()`` is called (not lazily on the first
    ``next``), so that saving the generator's state just before ``iter()`` is
    enough to replay an epoch — the Trainer's exact resume relies on it.

        >>> import numpy as np
        >>> list(RandomSampler(range(5), generator=np.random.default_rng(0)))
        [2, 4, 3, 0, 1]
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        super().__init__(data_source)
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if num_samples is not None and not replacement and num_samples > len(data_source):
            raise ValueError(f"RandomSampler: num_samples={num_samples} is more than the "
                             f"{len(data_source)} samples; use replacement=True")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        rng, n = _rng(self.generator), len(self.data_source)
        if self.replacement:
            return iter(rng.integers(0, n, self.num_samples).tolist())
        return iter(rng.permutation(n)[:self.num_samples].tolist())

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``.

        >>> list(BatchSampler(range(5), batch_size=2, drop_last=False))
        [[0, 1], [2, 3], [4]]
        >>> list(BatchSampler(range(5), batch_size=2, drop_last=True))
        [[0, 1], [2, 3]]
    """

    def __init__(self, sampler, batch_size, drop_last):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"BatchSampler: batch_size must be a positive integer, "
                             f"got {batch_size!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        indices = iter(self.sampler)  # now, not on the first next(): see RandomSampler
        return self._batches(indices)

    def _batches(self, indices):
        batch = []
        for i in indices:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


# ------------------------------------------------------------------ DataLoader
class DataLoader:
    """Iterates over ``dataset`` in mini-batches of collated tensors.

    ``shuffle=True`` draws a new order every epoch from ``generator`` (a
    ``numpy.random.Generator``; default: tinygrad_zh's global one). Give either
    ``batch_size``/``shuffle``/``sampler``/``drop_last`` or a ready
    ``batch_sampler``, as in PyTorch. Multiprocess loading (``num_workers``)
    is not offered: the in-memory fast path (see the module docstring) keeps
    loading far below a training step's time.

        >>> import numpy as np, tinygrad_zh as tg
        >>> ds = TensorDataset(tg.arange(6))
        >>> loader = DataLoader(ds, batch_size=4, shuffle=True,
        ...                     generator=np.random.default_rng(0))
        >>> [b.tolist() for (b,) in loader], len(loader)
        ([[3, 2, 5, 4], [0, 1]], 2)
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 collate_fn=None, drop_last=False, generator=None):
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler cannot be combined with "
                                 "batch_size, shuffle, sampler or drop_last")
        elif sampler is not None and shuffle:
            raise ValueError("DataLoader: give either sampler or shuffle=True, not both")
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle \
                else SequentialSampler(dataset)
        if batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.collate_fn, self.generator = collate_fn, generator

    def __iter__(self):
        return _BatchIterator(self)

    def __len__(self):
        return len(self.batch_sampler)

    def fetch(self, indices):
        """The collated batch of the samples at ``indices``."""
        getitems = getattr(self.dataset, "__getitems__", None)
        if self.collate_fn is None and getitems is not None:
            return getitems(indices)
        return (self.collate_fn or default_collate)([self.dataset[i] for i in indices])


class _BatchIterator:
    """One pass over a DataLoader; ``skip(n)`` jumps over batches without loading them."""

    def __init__(self, loader):
        self._loader = loader
        self._batches = iter(loader.batch_sampler)

    def __iter__(self):
        return self

    def __next__(self):
        return self._loader.fetch(next(self._batches))

    def skip(self, n):
        """Advance past ``n`` batches (to resume mid-epoch); returns self."""
        for _ in range(n):
            next(self._batches)
        return self


def default_collate(batch):
    """Stack a list of samples into batch tensors, keeping the samples' structure.

    Tensors and NumPy arrays are stacked along a new first dim; Python ints,
    floats and bools become int64, float64 and bool tensors (as in PyTorch);
    tuples, lists and dicts are collated field by field; strings stay a list.

        >>> import tinygrad_zh as tg
        >>> batch = default_collate([{"x": tg.zeros(2), "y": 1}, {"x": tg.ones(2), "y": 0}])
        >>> batch["x"].shape, batch["y"]
        ((2, 2), tensor([1, 0]))
    """
    first = batch[0]
    if isinstance(first, Tensor):
        return Tensor._make(np.stack([t.data for t in batch]))
    if isinstance(first, (np.ndarray, np.generic)):
        return Tensor(np.stack(batch))
    if isinstance(first, (bool, int, float)):
        dtype = {bool: np.bool_, int: np.int64, float: np.float64}[type(first)]
        return Tensor(np.asarray(batch, dtype=dtype))
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, collections.abc.Mapping):
        return {key: default_collate([sample[key] for sample in batch]) for key in first}
    if isinstance(first, (tuple, list)):
        if any(len(sample) != len(first) for sample in batch):
            raise RuntimeError(f"default_collate: each sample must have the same number of "
                               f"fields; got lengths {sorted({len(s) for s in batch})}")
        fields = [default_collate(list(field)) for field in zip(*batch)]
        if hasattr(first, "_fields"):  # a namedtuple keeps its type
            return type(first)(*fields)
        return fields if isinstance(first, list) else tuple(fields)
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; "
                    "expected tensors, NumPy arrays, numbers, strings, or tuples/lists/dicts "
                    "of them (or pass your own collate_fn)")


def _rng(generator):
    """The generator to draw from: the one given, or tinygrad_zh's global one."""
    if generator is None:
        return creation._generator("cpu")
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator "
                        f"(np.random.default_rng(seed)), got {type(generator).__name__}")
    return generator
