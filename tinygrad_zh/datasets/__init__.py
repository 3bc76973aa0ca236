"""Data sets read from standard formats: MNIST-style IDX files, UTF-8 text corpora."""
from .mnist import MNIST, FashionMNIST  # noqa: F401
