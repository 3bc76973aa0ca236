"""utils.data: data sets, samplers, the DataLoader (order, shuffling, drop_last, collate).

The reference for a DataLoader's batches is written independently here: the
index order (0..n-1, or the permutation a fresh generator with the same seed
draws) cut into slices of ``batch_size``. PyTorch's DataLoader is compared
where it is installed.
"""
import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh as tg
from helpers import torch_api
from tinygrad_zh.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset,
                                    RandomSampler, SequentialSampler, Subset, TensorDataset,
                                    default_collate, random_split)

FAST = settings(max_examples=30, deadline=None, derandomize=True, database=None)


class ListDataset(Dataset):
    """Samples from a list, one at a time: the DataLoader's slow path."""

    def __init__(self, samples):
        self.samples = samples

    def __getitem__(self, i):
        return self.samples[i]

    def __len__(self):
        return len(self.samples)


def reference_batches(n, batch_size, drop_last, order=None):
    order = list(range(n)) if order is None else list(order)
    cuts = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return [c for c in cuts if len(c) == batch_size or not drop_last]


def xy_dataset(n):
    x = tg.tensor(np.arange(n * 3, dtype=np.float32).reshape(n, 3))
    return TensorDataset(x, tg.arange(n))


# ------------------------------------------------------------------ DataLoader
@FAST
@given(n=st.integers(1, 40), batch_size=st.integers(1, 12), drop_last=st.booleans(),
       shuffle=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_batches_match_the_reference_order(n, batch_size, drop_last, shuffle, seed):
    loader = DataLoader(xy_dataset(n), batch_size=batch_size, shuffle=shuffle,
                        drop_last=drop_last, generator=np.random.default_rng(seed))
    order = np.random.default_rng(seed).permutation(n) if shuffle else None
    expected = reference_batches(n, batch_size, drop_last, order)
    got = [y.tolist() for _, y in loader]
    assert got == expected
    assert len(loader) == len(expected)
    for x, y in loader:  # features stay with their labels
        np.testing.assert_array_equal(x.numpy(), y.numpy()[:, None] * 3 + np.arange(3))


def test_fast_path_and_slow_path_give_the_same_batches():
    ds = xy_dataset(10)
    slow = ListDataset([ds[i] for i in range(10)])
    for fast_batch, slow_batch in zip(DataLoader(ds, batch_size=4), DataLoader(slow, 4)):
        for a, b in zip(fast_batch, slow_batch):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fast_path_fetches_each_batch_with_one_call():
    calls = []

    class Counting(TensorDataset):
        def __getitem__(self, i):
            calls.append(("one", i))
            return super().__getitem__(i)

        def __getitems__(self, indices):
            calls.append(("batch", list(indices)))
            return super().__getitems__(indices)

    ds = Counting(tg.arange(7))
    list(DataLoader(ds, batch_size=3))
    assert calls == [("batch", [0, 1, 2]), ("batch", [3, 4, 5]), ("batch", [6])]
    calls.clear()
    list(DataLoader(ds, batch_size=3, collate_fn=default_collate))  # a collate_fn: per sample
    assert [kind for kind, _ in calls] == ["one"] * 7


def test_shuffle_is_reproducible_and_new_each_epoch():
    def epochs(seed):
        loader = DataLoader(xy_dataset(20), batch_size=5, shuffle=True,
                            generator=np.random.default_rng(seed))
        return [[y.tolist() for _, y in loader] for _ in range(2)]

    first, second = epochs(3)
    assert epochs(3) == [first, second]
    assert first != second
    assert sorted(sum(first, [])) == list(range(20))


def test_shuffle_without_generator_follows_manual_seed():
    def order():
        tg.manual_seed(5)
        return [y.tolist() for _, y in DataLoader(xy_dataset(12), batch_size=4, shuffle=True)]
    assert order() == order()


def test_iterator_skip_resumes_mid_epoch():
    loader = DataLoader(xy_dataset(20), batch_size=3, shuffle=True,
                        generator=np.random.default_rng(1))
    state = loader.generator.bit_generator.state
    full = [y.tolist() for _, y in loader]
    loader.generator.bit_generator.state = state
    rest = [y.tolist() for _, y in iter(loader).skip(4)]
    assert rest == full[4:]


def test_sampler_and_batch_sampler_arguments():
    ds = xy_dataset(6)
    reverse = [5, 4, 3, 2, 1, 0]
    assert [y.tolist() for _, y in DataLoader(ds, batch_size=4, sampler=reverse)] == \
        [[5, 4, 3, 2], [1, 0]]
    batches = [[0, 5], [1], [2, 3, 4]]
    assert [y.tolist() for _, y in DataLoader(ds, batch_sampler=batches)] == batches


@pytest.mark.parametrize("kwargs, message", [
    (dict(sampler=[0, 1], shuffle=True), "either sampler or shuffle"),
    (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler cannot be combined"),
    (dict(batch_sampler=[[0]], drop_last=True), "batch_sampler cannot be combined"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(shuffle=True, generator=7), "numpy.random.Generator"),
])
def test_loader_argument_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        list(DataLoader(xy_dataset(4), **kwargs))


# ------------------------------------------------------------------ collate
def test_default_collate_of_tuples_dicts_numbers_and_strings():
    Point = collections.namedtuple("Point", "x y")
    samples = [({"img": np.full((2, 2), i, np.uint8), "name": f"s{i}", "w": 0.5 * i},
                Point(i, i % 2 == 0)) for i in range(3)]
    batch = default_collate(samples)
    features, point = batch
    assert isinstance(batch, tuple) and isinstance(point, Point)
    assert features["img"].shape == (3, 2, 2) and features["img"].dtype == tg.uint8
    assert features["name"] == ["s0", "s1", "s2"]
    assert features["w"].dtype == tg.float64 and features["w"].tolist() == [0.0, 0.5, 1.0]
    assert point.x.dtype == tg.int64 and point.x.tolist() == [0, 1, 2]
    assert point.y.dtype == tg.bool_ and point.y.tolist() == [True, False, True]
    assert default_collate([[1, 2], [3, 4]])[0].tolist() == [1, 3]  # a list stays a list


def test_default_collate_stacks_tensors():
    out = default_collate([tg.ones(2, 3), tg.zeros(2, 3)])
    assert out.shape == (2, 2, 3) and out.sum().item() == 6


def test_default_collate_errors():
    with pytest.raises(RuntimeError, match="same number of fields"):
        default_collate([(1, 2), (3,)])
    with pytest.raises(TypeError, match="cannot batch samples of type object"):
        default_collate([object(), object()])


def test_collate_matches_pytorch():
    torch = torch_api()
    samples = [(np.full(3, i, np.float32), i, {"w": i / 2}) for i in range(4)]
    ours = default_collate(samples)
    theirs = torch.utils.data.default_collate(samples)
    for a, b in ((ours[0], theirs[0]), (ours[1], theirs[1]), (ours[2]["w"], theirs[2]["w"])):
        assert str(a.dtype) == str(b.dtype).replace("torch.", "")
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ------------------------------------------------------------------ data sets
def test_tensor_dataset_checks_lengths():
    with pytest.raises(ValueError, match=r"same first dimension.*\(3,\), \(4,\)"):
        TensorDataset(tg.zeros(3), tg.zeros(4))
    with pytest.raises(TypeError, match="expects tensors"):
        TensorDataset(np.zeros(3))


@FAST
@given(n=st.integers(1, 30), fractions=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_random_split_partitions_the_indices(n, fractions, seed):
    lengths = [0.7, 0.2, 0.1] if fractions else [n // 2, n - n // 2]
    parts = random_split(xy_dataset(n), lengths, generator=np.random.default_rng(seed))
    indices = sum((p.indices for p in parts), [])
    assert sorted(indices) == list(range(n))
    assert indices == np.random.default_rng(seed).permutation(n).tolist()
    if fractions:  # floors first, the remainder spread from the first part on
        floors = [int(n * f) for f in lengths]
        assert sum(len(p) for p in parts) == n
        assert all(0 <= len(p) - f <= 1 for p, f in zip(parts, floors))


def test_random_split_errors():
    with pytest.raises(ValueError, match="sum to the data set's length 5"):
        random_split(xy_dataset(5), [2, 2])


def test_subset_keeps_the_fast_path():
    sub = Subset(xy_dataset(10), [9, 3, 4])
    assert sub[0][1].item() == 9 and len(sub) == 3
    x, y = DataLoader(sub, batch_size=3).fetch([0, 1, 2])
    assert y.tolist() == [9, 3, 4]
    assert not hasattr(Subset(ListDataset([1, 2]), [0]), "__getitems__")


def test_concat_dataset():
    ds = xy_dataset(3) + ListDataset([(tg.zeros(3), tg.tensor(10))])
    assert isinstance(ds, ConcatDataset) and len(ds) == 4
    assert [ds[i][1].item() for i in range(-4, 4)] == [0, 1, 2, 10] * 2
    with pytest.raises(IndexError, match="out of range for 4 samples"):
        ds[4]


# ------------------------------------------------------------------ samplers
def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    with_replacement = list(RandomSampler(range(3), replacement=True, num_samples=10,
                                          generator=np.random.default_rng(0)))
    assert len(with_replacement) == 10 and set(with_replacement) <= {0, 1, 2}
    assert len(BatchSampler(range(10), 3, drop_last=True)) == 3
    assert len(BatchSampler(range(10), 3, drop_last=False)) == 4
    with pytest.raises(ValueError, match="use replacement=True"):
        RandomSampler(range(3), num_samples=5)


def test_a_subclassed_sampler_drives_the_loader():
    class EvenFirst(SequentialSampler):
        def __iter__(self):
            n = len(self.data_source)
            return iter(list(range(0, n, 2)) + list(range(1, n, 2)))

    ds = xy_dataset(5)
    assert [y.tolist() for _, y in DataLoader(ds, batch_size=3, sampler=EvenFirst(ds))] == \
        [[0, 2, 4], [1, 3]]
