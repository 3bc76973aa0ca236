"""Data sets read from standard formats: MNIST-style IDX files, UTF-8 text corpora."""
from .text import (CORPORA, Poem, TextBlocks, chinese_poems, default_corpus, load_corpus,
                   read_text, tiny_shakespeare, train_val_split)
