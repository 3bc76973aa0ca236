"""Text corpora for language models, and random (x, y) blocks to train on.

Where the text comes from:

- ``read_text(path)``: any UTF-8 file, with clear errors for a missing, empty or
  non-UTF-8 file (naming the file and the byte offset of the first bad byte).
- ``default_corpus()``: the first 300,174 characters of Tiny Shakespeare,
  shipped gzip-compressed inside the package, so training works offline on
  any machine. Shakespeare's plays are in the public domain; the selection is
  Andrej Karpathy's ``tinyshakespeare/input.txt`` from the char-rnn project.
- ``tiny_shakespeare(root)``: the whole 1.1 MB file, ``<root>/tinyshakespeare/input.txt``.
- ``chinese_poems("tang300" | "song100", root)``: 唐诗三百首 and 宋词一百首 in
  the ``fortune`` format of Debian's ``fortunes-zh`` package, read from the
  data root or ``/usr/share/games/fortunes/``. They are GPL-licensed, so they
  are read from disk, never shipped with this (MIT) package.

The data root is the ``root`` argument, else the ``TINYGRAD_ZH_DATA``
environment variable, else ``~/.tinygrad_zh/data``.

How a language model sees the text: a long stream of token ids, from which
``TextBlocks`` cuts random windows of ``block_size + 1`` tokens; ``x`` is the
first ``block_size`` and ``y`` the same window shifted by one, so the model
learns to predict every next token at once.

    >>> import numpy as np
    >>> blocks = TextBlocks(np.arange(10), block_size=4)
    >>> x, y = blocks.sample(2, np.random.default_rng(0))
    >>> x.tolist(), y.tolist()
    ([[5, 6, 7, 8], [3, 4, 5, 6]], [[6, 7, 8, 9], [4, 5, 6, 7]])
"""
import gzip
import os
import re
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..tensor import Tensor

__all__ = ["read_text", "default_corpus", "tiny_shakespeare", "chinese_poems", "parse_fortunes",
           "Poem", "load_corpus", "CORPORA", "data_root", "train_val_split", "TextBlocks"]

DEFAULT_DATA_ROOT = Path.home() / ".tinygrad_zh" / "data"
FORTUNES_DIR = Path("/usr/share/games/fortunes")
# The corpora known by name (load_corpus); any other name is read as a file path.
CORPORA = ("default", "shakespeare", "tang300", "song100")


def read_text(path):
    """The whole file as a ``str``; raises a clear error when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_text: no such file: {path}")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"read_text: {path} is empty; a corpus needs some text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"read_text: {path} is not UTF-8 text: byte {data[e.start]:#04x} at "
                         f"byte offset {e.start} ({e.reason}); convert it, e.g. "
                         f"`iconv -f GBK -t UTF-8`") from None


def default_corpus():
    """The embedded corpus: the first 300,174 characters of Tiny Shakespeare.

        >>> default_corpus()[:14]
        'First Citizen:'
    """
    data = resources.files(__package__).joinpath("corpus/tinyshakespeare_head.txt.gz")
    return gzip.decompress(data.read_bytes()).decode("utf-8")


def data_root(root=None):
    """The folder that holds the data sets: ``root``, ``$TINYGRAD_ZH_DATA``, or the default."""
    return Path(root or os.environ.get("TINYGRAD_ZH_DATA") or DEFAULT_DATA_ROOT)


def tiny_shakespeare(root=None):
    """All of Tiny Shakespeare (1,115,394 characters) from ``<root>/tinyshakespeare/input.txt``."""
    path = data_root(root) / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"tiny_shakespeare: {path} not found. Download it from "
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
            "input.txt into that folder, or set TINYGRAD_ZH_DATA; the embedded "
            "default_corpus() holds its first 300k characters")
    return read_text(path)


class Poem(NamedTuple):
    """One entry of a fortune file: its title, author and text, escapes removed."""
    title: str
    author: str
    text: str


def chinese_poems(name="tang300", root=None):
    """The poems of ``tang300`` (唐诗三百首) or ``song100`` (宋词一百首) as ``Poem``s."""
    if name not in ("tang300", "song100"):
        raise ValueError(f"chinese_poems: name must be 'tang300' or 'song100', got {name!r}")
    candidates = [data_root(root) / "tang300" / name, data_root(root) / name, FORTUNES_DIR / name]
    for path in candidates:
        if path.is_file():
            return parse_fortunes(read_text(path))
    raise FileNotFoundError(
        f"chinese_poems: {name} not found in {', '.join(str(p) for p in candidates)}. "
        "Install Debian's fortunes-zh package (apt install fortunes-zh), or point the data "
        "root (the root argument, --data-root, or TINYGRAD_ZH_DATA) at a folder holding "
        f"tang300/{name}")


def parse_fortunes(text):
    """Split fortune-format text into ``Poem``s.

    Entries are separated by lines holding only ``%``. Titles are coloured green
    (``ESC[32m ... ESC[m``) and authors yellow (``ESC[33m``); the colour decides
    which is which, and every escape is stripped from the result.

        >>> parse_fortunes("\\x1b[32m《静夜思》\\x1b[m\\n\\x1b[33m作者：李白\\x1b[m\\n床前明月光\\n%\\n")
        [Poem(title='《静夜思》', author='李白', text='床前明月光')]
    """
    poems = []
    for entry in re.split(r"^%\s*$", text, flags=re.M):
        titles, authors, body = [], [], []
        for line in entry.strip("\n").splitlines():
            plain = _ANSI_ESCAPE.sub("", line).strip()
            if line.startswith("\x1b[32m"):
                titles.append(re.sub(r"^题目[:：]", "", plain))
            elif line.startswith("\x1b[33m"):
                authors.append(re.sub(r"^作者[:：]", "", plain))
            elif plain:
                body.append(plain)
        if body:
            poems.append(Poem(" ".join(titles), " ".join(authors), "\n".join(body)))
    return poems


def load_corpus(name, root=None):
    """Training text by name (``CORPORA``) or, for any other string, from that file.

    The poems become one text, each as "title author" on a line, then the poem,
    separated by blank lines, so a model learns the layout too.
    """
    if name == "default":
        return default_corpus()
    if name == "shakespeare":
        return tiny_shakespeare(root)
    if name in ("tang300", "song100"):
        return "\n\n".join(f"{p.title} {p.author}\n{p.text}" for p in chinese_poems(name, root))
    return read_text(name)


def train_val_split(ids, val_fraction=0.1):
    """The first ``1 - val_fraction`` of the stream for training, the rest for validation.

    A cut, not a shuffle: neighbouring blocks overlap, so shuffled blocks would
    put the validation text in the training set too.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"train_val_split: val_fraction must be in [0, 1), got {val_fraction}")
    ids = np.asarray(ids)
    n_train = int(len(ids) * (1 - val_fraction))  # as nanoGPT: 1,003,854 for Tiny Shakespeare
    return ids[:n_train], ids[n_train:]


class TextBlocks:
    """Random windows of a token stream as (x, y) batches of shape (batch, block_size).

    ``y[b, t]`` is the token after ``x[b, t]``. ``generator`` is a
    ``numpy.random.Generator`` or an int seed; the same one gives the same
    batches, so runs repeat exactly.
    """

    def __init__(self, ids, block_size, name="the corpus"):
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.ids.ndim != 1:
            raise ValueError(f"TextBlocks: ids must be a 1-D stream of token ids, got shape "
                             f"{self.ids.shape}")
        if block_size < 1 or len(self.ids) < block_size + 1:
            raise ValueError(
                f"TextBlocks: {name} has {len(self.ids)} tokens, too few for block_size "
                f"{block_size}: a training window needs block_size + 1 = {block_size + 1} tokens "
                "(x and y shifted by one); use a longer text or a smaller block_size")
        self.block_size = block_size
        # Every window of block_size + 1 tokens, as a view: no copy of the stream.
        self._windows = np.lib.stride_tricks.sliding_window_view(self.ids, block_size + 1)

    def __len__(self):
        """How many different windows there are."""
        return len(self._windows)

    def sample(self, batch_size, generator=None):
        rng = generator if isinstance(generator, np.random.Generator) else \
            np.random.default_rng(generator)
        rows = self._windows[rng.integers(0, len(self._windows), size=batch_size)]
        return Tensor._make(rows[:, :-1].copy()), Tensor._make(rows[:, 1:].copy())


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
