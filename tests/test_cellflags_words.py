"""The extension's word passes (core/cellflags._words: a channel's flags read as one unsigned word) give
exactly the counts and flags of the per-correlation passes, for 1, 2 and 4 correlations and any subset
of them; layouts the word view cannot take fall back to the per-correlation passes."""

import numpy as np
import pytest

from alakazam.core import cellflags


def _case(rng, n_row, n_chan, n_corr):
    prior = rng.random((n_row, n_chan, n_corr)) < 0.05
    prior[rng.random(n_row) < 0.05] = True                  # rows flagged before (a dead antenna)
    flag = prior | (rng.random((n_row, n_chan, n_corr)) < 0.01)
    flag[:, 7] |= rng.random((n_row, n_corr)) < 0.6          # a channel newly flagged in most rows
    flag[rng.random(n_row) < 0.05, : n_chan * 2 // 3] = True  # rows newly flagged in most channels
    # channel 11: newly flagged in most rows in the LAST correlation only, and channel 12 flagged
    # before in the first correlation only: whether they grow depends on which correlations are used
    flag[:, 11, -1] |= rng.random(n_row) < 0.8
    prior[:, 12, 0] = True
    flag[:, 12] |= prior[:, 12]
    flag[:, 12, -1] |= rng.random(n_row) < 0.8
    return flag, prior


@pytest.mark.parametrize("n_corr,use", [(4, [0, 3]), (4, [0, 1, 2, 3]), (4, [1]), (2, [0, 1]), (2, [1]),
                                        (1, [0])])
def test_word_passes_equal_the_per_correlation_passes(monkeypatch, n_corr, use):
    rng = np.random.default_rng(n_corr * 10 + len(use))
    flag0, prior = _case(rng, 300, 256, n_corr)         # above THREADED_MIN_SAMPLES: the threaded passes
    rows = np.flatnonzero(rng.random(300) < 0.9).astype(np.int64)
    use = np.asarray(use, np.int64)
    assert cellflags._words(flag0, prior, use) is not None
    out = []
    for words in (True, False):
        if not words:
            monkeypatch.setattr(cellflags, "_words", lambda *a: None)
        f = flag0.copy()
        bad = np.zeros(256, bool)
        bad[3] = True
        cellflags._extend_rows_threaded(f, prior, rows, bad, use)
        out.append((f, bad))
    (fw, bw), (fo, bo) = out
    np.testing.assert_array_equal(bw, bo)
    np.testing.assert_array_equal(fw, fo)
    assert bw[7] and bw.sum() >= 2                      # the grown channel, besides the given one
    last = n_corr - 1 in use
    assert bw[11] == last and bw[12] == (last and n_corr > 1)   # only through the correlations used
    assert (fw != flag0).any()
    # the serial reference (_extend_rows) agrees too
    f = flag0.copy()
    bad = np.zeros(256, bool)
    bad[3] = True
    cellflags._extend_rows(f, prior, np.bool_(True), rows, bad, use)
    np.testing.assert_array_equal(f, fw)


def test_layouts_without_a_word_view_fall_back():
    f = np.zeros((10, 8, 4), bool)
    use = np.array([0, 3], np.int64)
    assert cellflags._words(f[:, ::2], f[:, ::2], use) is None      # not contiguous
    assert cellflags._words(np.zeros((10, 8, 3), bool), np.zeros((10, 8, 3), bool), use) is None
    assert cellflags._words(f, f.astype(np.uint8), use) is None


@pytest.mark.parametrize("n_corr,use", [(4, [0, 3]), (4, [1]), (2, [0, 1]), (1, [0])])
def test_small_group_word_pass_equals_the_per_correlation_passes(n_corr, use):
    """A group below THREADED_MIN_SAMPLES takes the serial word pass (_extend_words): the same flags and
    channels as the serial per-correlation reference (_extend_rows)."""
    rng = np.random.default_rng(n_corr * 7 + len(use))
    flag0, prior = _case(rng, 40, 256, n_corr)
    rows = np.flatnonzero(rng.random(40) < 0.9).astype(np.int64)
    assert len(rows) * 256 < cellflags.THREADED_MIN_SAMPLES
    use = np.asarray(use, np.int64)
    got, bad_g = flag0.copy(), np.zeros(256, bool)
    bad_g[3] = True
    cellflags._extend_rows_threaded(got, prior, rows, bad_g, use)
    want, bad_w = flag0.copy(), bad_g.copy()
    bad_w[:] = False
    bad_w[3] = True
    cellflags._extend_rows(want, prior, np.bool_(True), rows, bad_w, use)
    np.testing.assert_array_equal(bad_g, bad_w)
    np.testing.assert_array_equal(got, want)
    assert (got != flag0).any() and bad_g.sum() >= 2
