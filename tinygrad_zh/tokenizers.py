"""Tokenizers: text -> a list of integer ids -> text.

Three ways to cut text into tokens, from the simplest to the one GPT-2 uses:

- ``CharTokenizer``: one id per character seen in a corpus. Tiny vocabulary for
  English (Tiny Shakespeare has 65 characters), thousands for Chinese.
- ``ByteTokenizer``: one id per UTF-8 byte, 256 ids, any text at all. A Chinese
  character is 3 bytes, so 3 tokens.
- ``BPETokenizer``: byte-level byte-pair encoding. Starts from the 256 bytes and
  learns merges: the most frequent adjacent pair becomes a new token, again and
  again until the vocabulary is ``vocab_size`` big. Any text still encodes.

Every tokenizer has ``encode``, ``decode``, ``vocab_size`` and
``to_dict``/``from_dict`` (plain JSON-able data), so a checkpoint can carry its
tokenizer and a model is never paired with the wrong vocabulary.

    >>> tok = CharTokenizer("hello world")
    >>> tok.encode("hello")
    [3, 2, 4, 4, 5]
    >>> tok.decode(tok.encode("low"))
    'low'
    >>> ByteTokenizer().encode("好")
    [229, 165, 189]
"""
import collections
import re

__all__ = ["CharTokenizer", "ByteTokenizer", "BPETokenizer", "tokenizer_from_dict"]


class CharTokenizer:
    """One id per distinct character of ``text``, in sorted order.

    A character the tokenizer never saw raises ``ValueError`` naming it and its
    position, rather than mapping to a made-up "unknown" token: a model trained
    without such a token has never learned what it means, so a silent
    substitution would give a confident answer to a question it cannot read.
    """

    def __init__(self, text):
        if not isinstance(text, str) or not text:
            raise ValueError("CharTokenizer: needs a non-empty string to collect characters from")
        self.chars = "".join(sorted(set(text)))
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self):
        return len(self.chars)

    def encode(self, text):
        try:
            return [self._ids[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self._ids})
            first = next(i for i, c in enumerate(text) if c not in self._ids)
            raise ValueError(
                f"CharTokenizer.encode: {len(unknown)} character(s) not in the vocabulary of "
                f"{self.vocab_size}: {''.join(unknown)[:40]!r} (first at position {first}); "
                "use only characters of the training corpus, or a ByteTokenizer/BPETokenizer, "
                "which encode any text") from None

    def decode(self, ids):
        return "".join([self.chars[i] for i in _check_ids(ids, self.vocab_size, "Char")])

    def to_dict(self):
        return {"type": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, d):
        return cls(d["chars"])

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class ByteTokenizer:
    """The UTF-8 bytes of the text: 256 ids, no training, every string encodes.

    ``decode`` of ids that are not valid UTF-8 (a model may sample half of a
    Chinese character) puts U+FFFD in place of the broken bytes instead of
    raising, as ``bytes.decode(errors="replace")`` does.
    """
    vocab_size = 256

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(_check_ids(ids, 256, "Byte")).decode("utf-8", errors="replace")

    def to_dict(self):
        return {"type": "byte"}

    @classmethod
    def from_dict(cls, d):
        return cls()

    def __repr__(self):
        return "ByteTokenizer(vocab_size=256)"


class BPETokenizer:
    """Byte-level byte-pair encoding (as in GPT-2), trained with ``train``.

    Token ``i < 256`` is byte ``i``; token ``256 + k`` is the k-th merge, the
    concatenation of the two tokens it merged. The text is first split into
    chunks (a word with its leading space, a run of punctuation, white space),
    and merges never cross a chunk, so "dog." and "dog!" share the token "dog".

        >>> tok = BPETokenizer.train("low lower lowest " * 20, vocab_size=260)
        >>> [tok.decode([i]) for i in range(256, 260)]
        ['lo', 'low', ' low', ' lowe']
        >>> tok.decode(tok.encode("lowest and 最低"))
        'lowest and 最低'
    """
    # \w is Unicode-aware in Python: a run of Chinese characters is one chunk.
    CHUNK = re.compile(r" ?\w+| ?[^\w\s]+|\s+(?!\S)|\s+")

    def __init__(self, merges=()):
        self.merges = [tuple(pair) for pair in merges]
        self._rank = {pair: 256 + k for k, pair in enumerate(self.merges)}
        self._bytes = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            self._bytes.append(self._bytes[a] + self._bytes[b])
        self._cache = {}

    @classmethod
    def train(cls, text, vocab_size):
        """Learn ``vocab_size - 256`` merges from ``text``.

        Counting is done once per distinct chunk (weighted by how often it
        occurs), and after each merge only the chunks holding the merged pair
        are recounted, so 1 MB of text trains in seconds.
        """
        if vocab_size < 256:
            raise ValueError(f"BPETokenizer.train: vocab_size must be >= 256 (the bytes), "
                             f"got {vocab_size}")
        words = collections.Counter(cls.CHUNK.findall(text))
        seqs = [list(w.encode("utf-8")) for w in words]
        freqs = list(words.values())
        pairs = collections.Counter()      # pair -> weighted count
        where = collections.defaultdict(set)  # pair -> indices of chunks holding it
        for i, seq in enumerate(seqs):
            for pair in zip(seq, seq[1:]):
                pairs[pair] += freqs[i]
                where[pair].add(i)
        merges = []
        while len(merges) < vocab_size - 256 and pairs:
            best = max(pairs, key=pairs.__getitem__)
            if pairs[best] < 2:  # merging a pair seen once compresses nothing
                break
            new = 256 + len(merges)
            merges.append(best)
            for i in where.pop(best):
                seq, f = seqs[i], freqs[i]
                for pair in zip(seq, seq[1:]):
                    pairs[pair] -= f
                    if pairs[pair] == 0:
                        del pairs[pair]
                seqs[i] = seq = _merge(seq, best, new)
                for pair in zip(seq, seq[1:]):
                    pairs[pair] += f
                    where[pair].add(i)
        return cls(merges)

    @property
    def vocab_size(self):
        return 256 + len(self.merges)

    def encode(self, text):
        ids = []
        for chunk in self.CHUNK.findall(text):
            tokens = self._cache.get(chunk)
            if tokens is None:
                tokens = self._cache[chunk] = self._encode_chunk(chunk.encode("utf-8"))
            ids.extend(tokens)
        return ids

    def decode(self, ids):
        ids = _check_ids(ids, self.vocab_size, "BPE")
        return b"".join([self._bytes[i] for i in ids]).decode("utf-8", errors="replace")

    def _encode_chunk(self, data):
        # Apply merges in the order they were learned: always the pair with the
        # lowest rank first, exactly as training built them.
        seq = list(data)
        while len(seq) > 1:
            pair = min(zip(seq, seq[1:]), key=lambda p: self._rank.get(p, 1 << 62))
            if pair not in self._rank:
                break
            seq = _merge(seq, pair, self._rank[pair])
        return seq

    def to_dict(self):
        return {"type": "bpe", "merges": [list(pair) for pair in self.merges]}

    @classmethod
    def from_dict(cls, d):
        return cls(d["merges"])

    def __repr__(self):
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def tokenizer_from_dict(d):
    """Rebuild any tokenizer from its ``to_dict()``.

        >>> tokenizer_from_dict(CharTokenizer("abc").to_dict()).encode("cab")
        [2, 0, 1]
    """
    kinds = {"char": CharTokenizer, "byte": ByteTokenizer, "bpe": BPETokenizer}
    kind = d.get("type") if isinstance(d, dict) else None
    if kind not in kinds:
        raise ValueError(f"tokenizer_from_dict: expected a dict with 'type' one of "
                         f"{sorted(kinds)}, got {d!r:.80}")
    return kinds[kind].from_dict(d)


# ------------------------------------------------------------------ helpers
def _merge(seq, pair, new):
    """``seq`` with every non-overlapping occurrence of ``pair`` replaced by ``new``."""
    out, i, n = [], 0, len(seq)
    a, b = pair
    while i < n:
        if i + 1 < n and seq[i] == a and seq[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def _check_ids(ids, vocab_size, name):
    """ids as a list of Python ints, each in [0, vocab_size); a clear error otherwise."""
    if hasattr(ids, "tolist"):  # a Tensor or a NumPy array
        ids = ids.tolist()
    ids = list(ids)
    bad = [i for i in ids if not isinstance(i, int) or not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"{name}Tokenizer.decode: ids must be integers in [0, {vocab_size}), "
                         f"got {bad[:5]}")
    return ids
