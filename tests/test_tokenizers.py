"""Tokenizers: round trips on English, Chinese and mixed text, saving, clear errors."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_zh.tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, tokenizer_from_dict

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)

ENGLISH = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
CHINESE = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n"
MIXED = "GPT 读《静夜思》: 'moon' = 月 (tsuki?) 🌙\t end"
TEXTS = [ENGLISH, CHINESE, MIXED]
# A BPE trained on all three kinds of text, shared by the tests below.
BPE = BPETokenizer.train((ENGLISH + CHINESE + MIXED) * 30, vocab_size=300)


def all_tokenizers():
    return [CharTokenizer("".join(TEXTS)), ByteTokenizer(), BPE]


@pytest.mark.parametrize("text", TEXTS, ids=["english", "chinese", "mixed"])
@pytest.mark.parametrize("tok", all_tokenizers(), ids=repr)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@pytest.mark.parametrize("tok", all_tokenizers(), ids=repr)
def test_to_dict_from_dict_survives_json(tok):
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
    assert again.encode(MIXED) == tok.encode(MIXED)


@given(st.text())
@PROPERTY
def test_byte_round_trip_any_text(s):
    assert ByteTokenizer().decode(ByteTokenizer().encode(s)) == s


@given(st.text())
@PROPERTY
def test_bpe_round_trip_any_text(s):
    assert BPE.decode(BPE.encode(s)) == s


def test_char_vocabulary_is_sorted_characters():
    tok = CharTokenizer("hello")
    assert tok.chars == "ehlo" and tok.vocab_size == 4
    assert tok.encode("hole") == [1, 3, 2, 0]


def test_char_unknown_character_is_a_clear_error():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"not in the vocabulary of 3: 'z月'.*position 1"):
        tok.encode("az月")


def test_decode_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match=r"CharTokenizer.decode: ids must be integers in \[0, 3\)"):
        CharTokenizer("abc").decode([0, 3])
    with pytest.raises(ValueError, match=r"ByteTokenizer.decode.*\[0, 256\).*\[-1\]"):
        ByteTokenizer().decode([-1])


def test_decode_accepts_numpy_arrays():
    assert ByteTokenizer().decode(np.array([104, 105])) == "hi"


def test_byte_decode_of_a_broken_character_replaces_it():
    ids = ByteTokenizer().encode("月")  # three bytes
    assert ByteTokenizer().decode(ids[:2]) == "\ufffd"


def test_bpe_merges_the_most_frequent_pair_first():
    tok = BPETokenizer.train("aaab " * 10 + "cd", vocab_size=257)
    assert tok.merges == [(ord("a"), ord("a"))]
    assert tok.encode("aaab") == [256, ord("a"), ord("b")]


def test_bpe_compresses_its_training_text():
    text = (ENGLISH + CHINESE) * 20
    tok = BPETokenizer.train(text, vocab_size=400)
    assert tok.vocab_size <= 400
    assert len(tok.encode(text)) < len(text.encode("utf-8")) / 3


def test_bpe_vocab_size_below_256_is_an_error():
    with pytest.raises(ValueError, match="vocab_size must be >= 256"):
        BPETokenizer.train("abc", vocab_size=100)


def test_tokenizer_from_dict_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="'type' one of"):
        tokenizer_from_dict({"type": "wordpiece"})
