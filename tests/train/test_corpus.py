import os

import numpy as np
import pytest
import torch

from trainstab.core.errors import TrainstabError
from trainstab.train.corpus import bundled_corpus_path, load_corpus

COPY = 1  # the corpus's copy marker (fixtures/make_corpus.py)
RARE_FREQUENCY = 1 / (10 * 512)  # "rare": ten times rarer than a uniform vocabulary


def test_the_bundled_corpus_is_committed_and_has_a_long_tail():
    corpus = load_corpus(None, context_length=64, vocab_size=512)
    tokens = torch.cat([corpus.train, corpus.held_out])
    assert tokens.numel() == 1_000_000
    counts = torch.bincount(tokens, minlength=512).double() / tokens.numel()
    assert corpus.vocab_size == 512
    assert (counts < RARE_FREQUENCY).sum() >= 100  # a long tail of rare tokens
    assert (counts > 0).all()  # every token id occurs
    assert counts.max() > 100 * counts.median()  # Zipfian head


def test_the_bundled_corpus_needs_copying_from_context():
    tokens = np.load(bundled_corpus_path())
    markers = np.flatnonzero(tokens == COPY)[:2000]
    copied = 0
    for m in markers:
        # The 4 tokens after a COPY marker occurred, in order, earlier in the window.
        window, probe = tokens[max(0, m - 60) : m], tokens[m + 1 : m + 5]
        copied += any(np.array_equal(window[i : i + 4], probe) for i in range(len(window) - 3))
    assert len(markers) > 1000
    assert copied / len(markers) > 0.99


def test_batches_are_deterministic_windows_of_t_plus_one():
    corpus = load_corpus(None, context_length=16, vocab_size=512)
    a = corpus.batches(steps=3, batch_size=4, context_length=16, seed=7)
    assert a.shape == (3, 4, 17)
    assert torch.equal(a, corpus.batches(steps=3, batch_size=4, context_length=16, seed=7))
    assert not torch.equal(a, corpus.batches(steps=3, batch_size=4, context_length=16, seed=8))


def test_a_user_bin_file_is_read_as_uint16(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(5000, dtype="<u2").__mod__(100).tofile(path)
    corpus = load_corpus(path, context_length=8, vocab_size=100)
    assert corpus.vocab_size == 100
    assert corpus.train[:3].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b"this is not numpy"), "could not be read"),
        (lambda p: np.save(p, np.zeros((10, 10), dtype=np.int64)), "1-D array of integer"),
        (lambda p: np.save(p, np.zeros(5000, dtype=np.float32)), "1-D array of integer"),
        (lambda p: np.save(p, np.full(5000, 600, dtype=np.int64)), "token id 600, outside"),
        (lambda p: np.save(p, np.zeros(50, dtype=np.int64)), "fewer than the"),
    ],
)
def test_bad_corpus_files_get_a_clear_error(tmp_path, write, message):
    path = tmp_path / "corpus.npy"
    write(path)
    with pytest.raises(TrainstabError, match=message):
        load_corpus(path, context_length=64, vocab_size=512)


def test_an_unknown_suffix_is_rejected(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("hello")
    with pytest.raises(TrainstabError, match="suffix"):
        load_corpus(path, context_length=8, vocab_size=512)


@pytest.mark.parametrize("make", [lambda path: os.mkfifo(path), lambda path: path.symlink_to("/dev/zero")])
def test_a_corpus_that_is_not_a_regular_file_is_refused_before_reading(tmp_path, make):
    # A named pipe would block the read for ever; a link to /dev/zero would read until the memory is full.
    path = tmp_path / "tokens.bin"
    make(path)
    with pytest.raises(TrainstabError, match="is not a regular file"):
        load_corpus(path, context_length=64, vocab_size=512)
