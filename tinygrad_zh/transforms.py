"""Image transforms in NumPy: conversion, normalisation and data augmentation.

Data augmentation shows the network a slightly different version of each
training image every epoch — shifted a pixel or two, turned a few degrees — so
that it learns what a "7" looks like rather than memorising 60,000 pictures.

Every transform takes one image or a whole batch. Images are grey: the last
two dims are (H, W) and every dim before them is a batch dim, so ``(H, W)``,
``(1, H, W)``, ``(B, H, W)`` and ``(B, 1, H, W)`` all work, and the random
transforms draw their parameters once per image. They accept a NumPy array or
a Tensor and return the same kind. Randomness comes from ``generator`` (a
``numpy.random.Generator``), or else from tinygrad_zh's global generator,
which ``tg.manual_seed`` reseeds.

    >>> import numpy as np
    >>> to_input = Compose([ToTensor(), Normalize((0.1307,), (0.3081,))])
    >>> batch = to_input(np.zeros((8, 28, 28), dtype=np.uint8))
    >>> batch.shape, batch.dtype, round(batch[0, 0, 0, 0].item(), 4)
    ((8, 1, 28, 28), dtype('float32'), -0.4242)

Where we differ from torchvision: no PIL, grey images only, and
``RandomAffine`` samples with nearest-neighbour (torchvision's default too).
"""
import math

import numpy as np

from .tensor import Tensor
from .utils.data import _rng

__all__ = ["Compose", "ToTensor", "Normalize", "RandomCrop", "RandomHorizontalFlip",
           "RandomAffine", "RandomRotation"]


class Compose:
    """Apply transforms one after the other."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for transform in self.transforms:
            x = transform(x)
        return x

    def __repr__(self):
        return "Compose(" + ", ".join(map(repr, self.transforms)) + ")"


class ToTensor:
    """uint8 images ``(..., H, W)`` in 0..255 -> float32 Tensor ``(..., 1, H, W)`` in [0, 1].

    A float array is converted without scaling, as torchvision does.
    """

    def __call__(self, images):
        images = images.data if isinstance(images, Tensor) else np.asarray(images)
        if images.ndim < 2:
            raise ValueError(f"ToTensor: expects images of shape (..., H, W), got {images.shape}")
        scale = 1 / 255 if images.dtype == np.uint8 else 1.0
        return Tensor(np.expand_dims(images, -3).astype(np.float32) * np.float32(scale))

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """``(x - mean[c]) / std[c]`` for each channel c of ``(..., C, H, W)`` images.

    MNIST's mean and std over all training pixels are 0.1307 and 0.3081.
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if self.mean.shape != self.std.shape or np.any(self.std == 0):
            raise ValueError(f"Normalize: mean {mean} and std {std} need one value per channel, "
                             "and std must not be 0")

    def __call__(self, images):
        array = images.data if isinstance(images, Tensor) else np.asarray(images)
        if array.ndim < 3 or array.shape[-3] != len(self.mean) and len(self.mean) != 1:
            raise ValueError(f"Normalize: images of shape {array.shape} do not have "
                             f"{len(self.mean)} channels at dim -3 (apply ToTensor first)")
        return _like(images, (array - self.mean) / self.std)

    def __repr__(self):
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


class RandomCrop:
    """Pad by ``padding`` pixels (value ``fill``), then cut a random ``size`` window.

    ``RandomCrop(28, padding=2)`` shifts a 28x28 digit by up to 2 pixels each way.
    """

    def __init__(self, size, padding=None, fill=0, generator=None):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.padding, self.fill, self.generator = padding or 0, fill, generator

    def __call__(self, images):
        planes, rebuild = _as_planes(images)
        p = self.padding
        padded = np.pad(planes, ((0, 0), (p, p), (p, p)), constant_values=self.fill)
        (h, w), (height, width) = self.size, padded.shape[1:]
        if h > height or w > width:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the padded "
                             f"image ({height}, {width})")
        rng = _rng(self.generator)
        top = rng.integers(0, height - h + 1, len(planes))
        left = rng.integers(0, width - w + 1, len(planes))
        rows = top[:, None, None] + np.arange(h)[None, :, None]
        cols = left[:, None, None] + np.arange(w)[None, None, :]
        return rebuild(padded[np.arange(len(planes))[:, None, None], rows, cols])

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``.

    Right for clothes (Fashion-MNIST), wrong for digits: a mirrored 2 is no 2.
    """

    def __init__(self, p=0.5, generator=None):
        self.p, self.generator = p, generator

    def __call__(self, images):
        planes, rebuild = _as_planes(images)
        flip = _rng(self.generator).random(len(planes)) < self.p
        return rebuild(np.where(flip[:, None, None], planes[:, :, ::-1], planes))

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomAffine:
    """Rotate by an angle in ``[-degrees, degrees]``, shift, and scale each image.

    ``translate=(a, b)``: shifts of up to ``a * W`` and ``b * H`` pixels;
    ``scale=(lo, hi)``: a zoom factor in that range. Positive angles turn
    counter-clockwise as displayed. Pixels that come from outside the image
    get ``fill``.
    """

    def __init__(self, degrees, translate=None, scale=None, fill=0, generator=None):
        self.degrees = (-degrees, degrees) if np.isscalar(degrees) else tuple(degrees)
        self.translate, self.scale, self.fill = translate, scale, fill
        self.generator = generator

    def __call__(self, images):
        planes, rebuild = _as_planes(images)
        n, height, width = planes.shape
        rng = _rng(self.generator)
        angle = np.deg2rad(rng.uniform(*self.degrees, n))
        shift = np.zeros((n, 2))
        if self.translate is not None:
            limits = np.array([self.translate[0] * width, self.translate[1] * height])
            shift = np.round(rng.uniform(-limits, limits, (n, 2)))
        zoom = rng.uniform(*self.scale, n) if self.scale is not None else np.ones(n)
        # For every output pixel, find the source pixel it comes from (the inverse
        # map), relative to the image centre c:  src = R(-angle) (out - c - shift) / zoom + c.
        cy, cx = (height - 1) / 2, (width - 1) / 2
        y, x = np.meshgrid(np.arange(height) - cy, np.arange(width) - cx, indexing="ij")
        x = (x[None] - shift[:, 0, None, None]) / zoom[:, None, None]
        y = (y[None] - shift[:, 1, None, None]) / zoom[:, None, None]
        cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        src_x = np.rint(x * cos - y * sin + cx).astype(np.int64)
        src_y = np.rint(x * sin + y * cos + cy).astype(np.int64)
        inside = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
        picked = planes[np.arange(n)[:, None, None], src_y.clip(0, height - 1),
                        src_x.clip(0, width - 1)]
        return rebuild(np.where(inside, picked, np.asarray(self.fill, planes.dtype)))

    def __repr__(self):
        return (f"RandomAffine(degrees={self.degrees}, translate={self.translate}, "
                f"scale={self.scale})")


class RandomRotation(RandomAffine):
    """Rotate each image by an angle drawn from ``[-degrees, degrees]``."""

    def __init__(self, degrees, fill=0, generator=None):
        super().__init__(degrees, fill=fill, generator=generator)

    def __repr__(self):
        return f"RandomRotation(degrees={self.degrees})"


def _as_planes(images):
    """View ``(..., H, W)`` images as a stack of N planes ``(N, H, W)``, and the way back."""
    array = images.data if isinstance(images, Tensor) else np.asarray(images)
    if array.ndim < 2:
        raise ValueError(f"transforms: expects images of shape (..., H, W), got {array.shape}")
    lead = array.shape[:-2]
    planes = array.reshape((math.prod(lead),) + array.shape[-2:])
    return planes, lambda out: _like(images, out.reshape(lead + out.shape[1:]))


def _like(images, array):
    """Return ``array`` as the same kind (Tensor or NumPy) as ``images``."""
    return Tensor._make(np.ascontiguousarray(array)) if isinstance(images, Tensor) else array
