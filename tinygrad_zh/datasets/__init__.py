"""Data sets read from standard formats: MNIST-style IDX files, UTF-8 text corpora."""
from .mnist import MNIST, FashionMNIST  # noqa: F401
from .text import (CORPORA, Poem, TextBlocks, chinese_poems, default_corpus, load_corpus,
                   read_text, tiny_shakespeare, train_val_split)
