"""transforms: exact values where they are known (flips, 90-degree turns, integer shifts),
seeded reproducibility, one draw per image in a batch, and per-sample == per-batch shapes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_zh as tg
from tinygrad_zh.transforms import (Compose, Normalize, RandomAffine, RandomCrop,
                                    RandomHorizontalFlip, RandomRotation, ToTensor)

FAST = settings(max_examples=20, deadline=None, derandomize=True, database=None)


def images(n=6, size=9, seed=0):
    return np.random.default_rng(seed).integers(1, 256, (n, size, size), dtype=np.uint8)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_to_tensor_scales_and_adds_the_channel_dim():
    x = images(3)
    one, batch = ToTensor()(x[0]), ToTensor()(x)
    assert one.shape == (1, 9, 9) and batch.shape == (3, 1, 9, 9) and batch.dtype == tg.float32
    np.testing.assert_allclose(batch.numpy()[:, 0], x / 255, rtol=1e-6)
    np.testing.assert_array_equal(ToTensor()(np.full((2, 2), 0.5)).numpy(), np.full((1, 2, 2), 0.5))


def test_normalize_per_channel():
    x = tg.tensor(np.arange(8, dtype=np.float32).reshape(2, 2, 2))  # (C=2, H, W)
    out = Normalize((1.0, 2.0), (2.0, 4.0))(x).numpy()
    np.testing.assert_allclose(out[0], (x.numpy()[0] - 1) / 2)
    np.testing.assert_allclose(out[1], (x.numpy()[1] - 2) / 4)
    with pytest.raises(ValueError, match="do not have 2 channels at dim -3"):
        Normalize((1.0, 2.0), (1.0, 1.0))(tg.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="std must not be 0"):
        Normalize((0.0,), (0.0,))


@FAST
@given(padding=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_random_crop_is_a_window_of_the_padded_image(padding, seed):
    x = images(4, 7, seed=seed % 100)
    out = RandomCrop(7, padding=padding, generator=rng(seed))(x)
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    for image, source in zip(out, padded):
        windows = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                   if np.array_equal(source[dy:dy + 7, dx:dx + 7], image)]
        assert windows, "the crop is not a window of the padded image"


def test_random_crop_without_padding_is_the_identity():
    x = images()
    np.testing.assert_array_equal(RandomCrop(9)(x), x)
    with pytest.raises(ValueError, match="larger than the padded image"):
        RandomCrop(12, padding=1)(x)


def test_flip():
    x = images()
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(x), x[:, :, ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(x), x)
    out = RandomHorizontalFlip(generator=rng(1))(images(200))
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images(200))]
    assert 60 < sum(flipped) < 140  # about half, drawn per image


def test_rotation_by_90_degrees_is_rot90():
    x = images(size=9)
    # counter-clockwise as displayed, like np.rot90
    np.testing.assert_array_equal(RandomRotation((90, 90))(x), np.rot90(x, axes=(1, 2)))
    np.testing.assert_array_equal(RandomRotation((0, 0))(x), x)


def test_affine_integer_shift_moves_pixels_and_fills():
    x = images(1, 9)
    out = RandomAffine((0, 0), translate=(2 / 9, 0), generator=rng(3))(x)
    for shift in range(-2, 3):
        expected = np.zeros_like(x)
        if shift >= 0:
            expected[:, :, shift:] = x[:, :, :9 - shift]
        else:
            expected[:, :, :shift] = x[:, :, -shift:]
        if np.array_equal(out, expected):
            break
    else:
        pytest.fail("the output is not the input shifted by -2..2 pixels with zero fill")


def test_random_transforms_are_seeded_and_draw_per_image():
    x = np.repeat(images(1), 50, axis=0)  # 50 copies of one image
    t = RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), generator=rng(7))
    a = t(x)
    b = RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), generator=rng(7))(x)
    np.testing.assert_array_equal(a, b)
    assert len({image.tobytes() for image in a}) > 40  # each copy moved differently
    tg.manual_seed(0)
    c = RandomRotation(10)(x)
    tg.manual_seed(0)
    np.testing.assert_array_equal(RandomRotation(10)(x), c)  # the global generator


@pytest.mark.parametrize("transform", [RandomCrop(9, padding=2), RandomHorizontalFlip(),
                                       RandomAffine(10, translate=(0.1, 0.1)),
                                       RandomRotation(10)], ids=repr)
def test_one_image_batch_and_tensor_inputs(transform):
    x = images(3)
    assert transform(x[0]).shape == (9, 9)
    assert transform(x).shape == (3, 9, 9) and transform(x).dtype == np.uint8
    t = ToTensor()(x)
    out = transform(t)
    assert isinstance(out, tg.Tensor) and out.shape == (3, 1, 9, 9)


def test_compose_in_order():
    pipeline = Compose([ToTensor(), Normalize((0.5,), (0.5,))])
    out = pipeline(np.array([[0, 255]], dtype=np.uint8))
    np.testing.assert_allclose(out.numpy(), [[[-1.0, 1.0]]])
    assert "ToTensor()" in repr(pipeline)
