"""mlpx.data.text: vocabularies, (window -> next token) pairs, Debian's word lists."""

import os

import numpy as np
import pytest

from mlpx.data import text
from mlpx.datasets import (
    WORD_LISTS,
    Vocabulary,
    load_word_list,
    make_windows,
    text_windows,
    tokenize,
)


def test_tokenize_levels():
    assert tokenize("ab c", "char") == ["a", "b", " ", "c"]
    assert tokenize("Don't stop, 2 go!", "word") == ["Don", "'", "t", "stop", ",", "2", "go",
                                                    "!"]
    with pytest.raises(ValueError, match="'level' parameter of tokenize"):
        tokenize("x", "byte")
    with pytest.raises(TypeError, match="must be a str"):
        tokenize(b"x")


def test_vocabulary_build_encode_decode():
    v = Vocabulary.build(["banana", "bandana"])
    assert v.tokens == ["<s>", "a", "b", "d", "n"] and len(v) == 5 and v.boundary_id == 0
    ids = v.encode("band")
    assert ids.dtype == np.int64 and ids.tolist() == [2, 1, 4, 3]
    assert "".join(v.decode(ids)) == "band"
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        v.encode("z")
    with pytest.raises(ValueError, match=r"Token id 5 is outside \[0, 5\)"):
        v.decode([5])


def test_vocabulary_min_count_max_size_and_unknown():
    words = [["the", "cat"], ["the", "dog"], ["the", "cat", "sat"]]
    v = Vocabulary.build(words, min_count=2, unknown="<unk>")
    assert v.tokens == ["<s>", "<unk>", "cat", "the"]
    assert v.encode(["the", "dog"]).tolist() == [3, 1]
    assert Vocabulary.build(words, max_size=1).tokens == ["<s>", "the"]
    for bad in ({"min_count": 0}, {"max_size": 0}, {"max_size": True}):
        with pytest.raises(ValueError, match="parameter of Vocabulary.build"):
            Vocabulary.build(words, **bad)
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(["<s>"])


def test_make_windows_pads_each_sequence():
    X, y = make_windows([[5, 6, 7], [], [8]], 2)
    assert X.dtype == y.dtype == np.int64
    assert X.tolist() == [[0, 0], [0, 5], [5, 6], [6, 7], [0, 0], [0, 8]]
    assert y.tolist() == [5, 6, 7, 0, 8, 0]
    X1, y1 = make_windows([[3, 4]], 1)
    assert X1.tolist() == [[0], [3], [4]] and y1.tolist() == [3, 4, 0]
    # a window longer than the sequence: the context is padded
    X5, y5 = make_windows([[3]], 5)
    assert X5.tolist() == [[0] * 5, [0, 0, 0, 0, 3]] and y5.tolist() == [3, 0]
    X0, y0 = make_windows([], 3)
    assert X0.shape == (0, 3) and y0.shape == (0,)


def test_make_windows_checks():
    with pytest.raises(ValueError, match="'window' parameter of make_windows"):
        make_windows([[1]], 0)
    with pytest.raises(ValueError, match="boundary id 0"):
        make_windows([[1, 0, 2]], 2)


def test_make_windows_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 9, rng.integers(0, 7)).tolist() for _ in range(40)]
    X, y = make_windows(seqs, 3)
    expect_X, expect_y = [], []
    for s in seqs:
        if not s:
            continue
        padded = [0, 0, 0] + s + [0]
        for t in range(3, len(padded)):
            expect_X.append(padded[t - 3:t])
            expect_y.append(padded[t])
    assert X.tolist() == expect_X and y.tolist() == expect_y


def test_text_windows_with_a_given_vocabulary():
    X, y, vocab = text_windows(["abc", "ba"], 2)
    assert X.shape == (7, 2) and len(vocab) == 4
    Xt, yt, same = text_windows(["cab"], 2, vocab=vocab)
    assert same is vocab and "".join(vocab.decode(yt[:3])) == "cab"
    Xw, yw, wv = text_windows(["the cat sat", "the dog"], 1, level="word", unknown="<unk>")
    assert wv.decode(yw).count("<s>") == 2 and Xw.shape == (7, 1)


def test_load_word_list_from_a_file(tmp_path):
    f = tmp_path / "words"
    f.write_text("Apple\napple\nbanana's\nnaïve\nx-ray\n\ncherry\n", encoding="utf-8")
    assert load_word_list(path=f) == ["apple", "naïve", "cherry"]
    assert load_word_list(path=f, lowercase=False, letters_only=False) == [
        "Apple", "apple", "banana's", "naïve", "x-ray", "cherry"]


def test_load_word_list_refuses_special_files_and_names(tmp_path):
    with pytest.raises(ValueError, match="'language' parameter of load_word_list"):
        load_word_list("klingon")
    with pytest.raises(OSError):
        load_word_list(path=tmp_path)  # a folder
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(OSError, match="FIFO|regular"):
            load_word_list(path=tmp_path / "fifo")


def test_load_word_list_names_the_missing_package(monkeypatch, tmp_path):
    monkeypatch.setitem(text.WORD_LISTS, "english", ("wamerican", str(tmp_path / "no")))
    with pytest.raises(FileNotFoundError, match="apt-get install wamerican"):
        load_word_list("english")


@pytest.mark.parametrize("language", sorted(WORD_LISTS))
def test_debian_word_lists(language):
    package, path = WORD_LISTS[language]
    if not os.path.exists(path):
        pytest.skip(f"{path} missing: apt-get install {package} (.ci/run installs it)")
    words = load_word_list(language)
    assert len(words) > 50_000 and all(w.isalpha() and w == w.lower() for w in words[:1000])
    assert len(set(words)) == len(words)
