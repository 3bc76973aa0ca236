"""Text corpora and (x, y) blocks: reading files, fortune-format poems, batches."""
import os
from pathlib import Path

import numpy as np
import pytest

from tinygrad_zh.datasets import text

# The shared data folder next to the repository (or wherever TINYGRAD_ZH_DATA points).
SHARED = Path(os.environ.get("TINYGRAD_ZH_DATA")
              or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
needs_shared = pytest.mark.skipif(not (SHARED / "tang300").is_dir(),
                                  reason=f"shared data folder {SHARED} is not here")


def test_read_text_utf8(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello 世界\n", encoding="utf-8")
    assert text.read_text(path) == "hello 世界\n"


def test_read_text_errors_name_the_file_and_byte_offset(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.txt"):
        text.read_text(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        text.read_text(empty)
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("ab月".encode("gbk"))
    with pytest.raises(ValueError, match=r"gbk.txt is not UTF-8 text: byte 0xd4 at byte offset 2"):
        text.read_text(gbk)


def test_default_corpus_is_shipped_shakespeare():
    corpus = text.default_corpus()
    assert len(corpus) == 300_174
    assert corpus.startswith("First Citizen:\nBefore we proceed")


def test_parse_fortunes_strips_escapes_and_separates_fields():
    raw = ("\x1b[32m题目:《塞上》\x1b[m\n\x1b[33m作者:柳开\x1b[m\n鸣骹直上一千尺，\n天静无风声更干。\n%\n"
           "\x1b[32m《一》\x1b[m\n\x1b[32m《二》\x1b[m\n\x1b[33m作者：某\x1b[m\n诗\n%\n")
    poems = text.parse_fortunes(raw)
    assert poems == [text.Poem("《塞上》", "柳开", "鸣骹直上一千尺，\n天静无风声更干。"),
                     text.Poem("《一》 《二》", "某", "诗")]


@needs_shared
def test_tang300_from_the_data_root():
    poems = text.chinese_poems("tang300", root=SHARED)
    assert len(poems) == 313
    assert all("\x1b" not in p.title + p.author + p.text for p in poems)
    assert poems[0].author == "张九龄" and poems[0].text.startswith("兰叶春葳蕤")


@needs_shared
def test_song100_and_the_environment_variable(monkeypatch):
    monkeypatch.setenv("TINYGRAD_ZH_DATA", str(SHARED))
    poems = text.chinese_poems("song100")
    assert poems[0].title == "《塞上》" and poems[0].author.startswith("柳开")
    corpus = text.load_corpus("song100")
    assert corpus.startswith("《塞上》 柳开") and "\x1b" not in corpus


@needs_shared
def test_tiny_shakespeare_split_sizes():
    train, val = text.train_val_split(np.frombuffer(
        text.tiny_shakespeare(SHARED).encode(), dtype=np.uint8), 0.1)
    assert (len(train), len(val)) == (1_003_854, 111_540)  # the figures of the data README


def test_missing_corpora_say_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "FORTUNES_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="tang300 not found.*fortunes-zh"):
        text.chinese_poems("tang300", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="input.txt not found.*TINYGRAD_ZH_DATA"):
        text.tiny_shakespeare(root=tmp_path)
    with pytest.raises(ValueError, match="'tang300' or 'song100'"):
        text.chinese_poems("tang301")


def test_load_corpus_reads_any_path(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("abc", encoding="utf-8")
    assert text.load_corpus(str(path)) == "abc"
    assert text.load_corpus("default") == text.default_corpus()


def test_blocks_are_shifted_by_one_and_seeded():
    ids = np.arange(100) * 7
    blocks = text.TextBlocks(ids, block_size=8)
    x, y = blocks.sample(5, generator=3)
    assert x.shape == y.shape == (5, 8) and x.dtype == np.int64
    np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])
    starts = x.numpy()[:, 0] // 7
    np.testing.assert_array_equal(x.numpy(), ids[starts[:, None] + np.arange(8)])
    x2, _ = blocks.sample(5, generator=np.random.default_rng(3))
    np.testing.assert_array_equal(x.numpy(), x2.numpy())
    assert len(blocks) == 92


def test_blocks_reach_the_last_token():
    blocks = text.TextBlocks(np.arange(5), block_size=4)  # exactly one window
    x, y = blocks.sample(1, 0)
    assert x.tolist() == [[0, 1, 2, 3]] and y.tolist() == [[1, 2, 3, 4]]


def test_a_corpus_too_small_for_the_block_is_a_clear_error():
    with pytest.raises(ValueError, match=r"poem.txt has 8 tokens, too few for block_size 8.*9"):
        text.TextBlocks(np.arange(8), block_size=8, name="poem.txt")


def test_train_val_split_is_a_cut():
    train, val = text.train_val_split(np.arange(10), 0.2)
    assert train.tolist() == list(range(8)) and val.tolist() == [8, 9]
    with pytest.raises(ValueError, match="val_fraction"):
        text.train_val_split(np.arange(10), 1.0)
