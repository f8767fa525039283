"""averaging._accumulate_hands (the accumulation of K, G, KC, CP: each correlation on its own, no sky
table or the parallactic angle alone) against the general kernel (_accumulate_corrected, forced with
averaging._HANDS = False): the same samples, values and weights.  Per-channel or grouped frequency
samples: every sum bit for bit (each element sums its samples in the same order); one frequency sample
for the whole band (full-band K/G): sums of each (row, correlation) made locally, equal to rounding; the
per-row weight totals (summed correlation by correlation) equal to rounding.  With flags, zero and
negative weights, NaN data, flagged (NaN, 0) solutions, flagged P, rows of both orientations, unused
channels, 2 stored correlations and every correlation subset a solve uses."""

import os
import sys
import zlib

import numpy as np
import pytest

from alakazam.core import averaging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_kernels import baseline_index  # noqa: E402  (tests/reference_kernels.py)

N_ANT, N_CHAN = 6, 12


def _case(seed, n_corr=4):
    rng = np.random.default_rng(seed)
    n_row, n_t = 240, 5
    a1 = rng.integers(0, N_ANT, n_row)
    a2 = rng.integers(0, N_ANT, n_row)
    a2[a1 == a2] = (a1[a1 == a2] + 1) % N_ANT
    tidx = rng.integers(0, n_t, n_row)

    def cplx(*s):
        return rng.standard_normal(s) + 1j * rng.standard_normal(s)

    data = cplx(n_row, N_CHAN, n_corr).astype(np.complex64)
    model = cplx(n_row, N_CHAN, n_corr).astype(np.complex64)
    weight = rng.uniform(0.5, 2.0, (n_row, N_CHAN, n_corr)).astype(np.float32)
    weight[rng.random(weight.shape) < 0.05] = 0
    weight[rng.random(weight.shape) < 0.02] = -1
    flag = rng.random((n_row, N_CHAN, n_corr)) < 0.15
    data[flag & (rng.random(flag.shape) < 0.5)] = np.nan           # flagged NaN: never summed
    shape_t = (n_t, N_ANT, N_CHAN, 2)
    diag = rng.uniform(0.5, 2, shape_t) * np.exp(1j * rng.uniform(-3, 3, shape_t))
    diag[rng.random(diag.shape) < 0.03] = np.nan
    diag[rng.random(diag.shape) < 0.01] = 0
    p = cplx(n_t, N_ANT, 1, 2, 2)
    p[1, 2] = np.nan
    row_bl, _, _ = baseline_index(a1, a2, N_ANT)
    sbin = rng.integers(-1, 3, n_row)
    return dict(data=data, model=model, weight=weight, flag=flag, tidx=tidx, a1=a1, a2=a2, diag=diag, p=p,
                row_bl=row_bl, sbin=sbin)


def _acc(monkeypatch, hands, c, fsamp, use, with_diag, with_p, corr_src=None):
    monkeypatch.setattr(averaging, "_HANDS", hands)
    n_fs = int(fsamp.max()) + 1
    shape = (3, N_ANT * (N_ANT - 1) // 2, n_fs, 4)
    out = (np.zeros(shape, complex), np.zeros(shape, complex), np.zeros(shape), np.zeros(len(c["a1"])))
    averaging.accumulate_corrected(*out, c["data"], c["model"], c["flag"], c["weight"],
                                   np.arange(len(c["a1"])), c["tidx"], c["a1"], c["a2"], c["sbin"],
                                   c["row_bl"], fsamp, corr_src=corr_src,
                                   diag=c["diag"] if with_diag else None, sky=c["p"] if with_p else None,
                                   corr_use=use)
    return out


USES = {"parallel": [1, 0, 0, 1], "cross": [0, 1, 1, 0], "all": [1, 1, 1, 1], "pp": [1, 0, 0, 0]}


@pytest.mark.parametrize("use", list(USES))
@pytest.mark.parametrize("with_diag", [False, True])
@pytest.mark.parametrize("with_p", [False, True])
@pytest.mark.parametrize("freq", ["per_chan", "grouped", "full"])
def test_hands_kernel_equals_the_general_kernel(monkeypatch, use, with_diag, with_p, freq):
    c = _case(zlib.crc32(repr((use, with_diag, with_p, freq)).encode()) % 1000)
    fsamp = {"per_chan": np.arange(N_CHAN), "grouped": np.arange(N_CHAN) // 5,
             "full": np.zeros(N_CHAN, np.int64)}[freq].copy()
    fsamp[3] = -1                                                  # a channel not used
    u = np.asarray(USES[use], bool)
    new = _acc(monkeypatch, True, c, fsamp, u, with_diag, with_p)
    old = _acc(monkeypatch, False, c, fsamp, u, with_diag, with_p)
    assert (new[2] > 0).any()
    for x, y in zip(new[:3], old[:3]):
        if freq == "full":
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12 * np.abs(y).max())
        else:
            np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(new[3], old[3], rtol=1e-13)
    assert ((new[3] == 0) == (old[3] == 0)).all()                 # the same rows without a sample
    assert (new[0][..., ~u] == 0).all() and (new[2][..., ~u] == 0).all()


@pytest.mark.parametrize("with_p", [False, True])
def test_hands_kernel_with_two_stored_correlations(monkeypatch, with_p):
    c = _case(5, n_corr=2)
    src = averaging.corr_map(["XX", "YY"])
    fsamp = np.arange(N_CHAN) // 4
    u = np.asarray(USES["parallel"], bool)
    new = _acc(monkeypatch, True, c, fsamp, u, True, with_p, corr_src=src)
    old = _acc(monkeypatch, False, c, fsamp, u, True, with_p, corr_src=src)
    assert (new[2][..., [0, 3]] > 0).any()
    for x, y in zip(new[:3], old[:3]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(new[3], old[3], rtol=1e-13)


def _acc_bin_major(monkeypatch, hands, c, fsamp, use, sbin, splits, keep=False):
    # the sums in the solve's bin-major layout (unit._bin_major: a (2, 1, 0, 3) transposed view of
    # C-contiguous (n_fs, n_bl, n_bin, 4) arrays), the rows given in ``splits`` successive calls (chunks);
    # keep: the slots kept across the calls (averaging.bin_runs) and stored after the last (flush_runs),
    # as unit._accumulate_group does
    monkeypatch.setattr(averaging, "_HANDS", hands)
    n_fs = int(fsamp.max()) + 1
    n_bl = N_ANT * (N_ANT - 1) // 2
    base = (n_fs, n_bl, 3, 4)
    owners = (np.zeros(base, complex), np.zeros(base, complex), np.zeros(base))
    sums = tuple(a.transpose(2, 1, 0, 3) for a in owners)
    w_row = np.zeros(len(c["a1"]))
    runs = averaging.bin_runs(n_bl, n_fs, use) if keep else None
    for part in np.array_split(np.arange(len(c["a1"])), splits):
        averaging.accumulate_corrected(*sums, w_row, c["data"], c["model"], c["flag"], c["weight"], part,
                                       c["tidx"], c["a1"], c["a2"], sbin, c["row_bl"], fsamp, diag=c["diag"],
                                       sky=c["p"], corr_use=use, runs=runs)
    if keep:
        if hands:
            assert (runs[3] >= 0).any()                            # slots still held before the flush
        averaging.flush_runs(*sums, runs)
        assert (runs[3] < 0).all()
    return owners + (w_row,)


@pytest.mark.parametrize("use", ["cross", "all", "pp"])
@pytest.mark.parametrize("freq", ["per_chan", "grouped"])
@pytest.mark.parametrize("order", ["random", "scans"])
@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("keep", [False, True])
def test_bin_major_runs_equal_adding_in_place(monkeypatch, use, freq, order, splits, keep):
    """Per-channel samples in the bin-major layout (CP over one time cell): the hands kernel sums each
    baseline's rows of one bin in a contiguous copy of that (bin, baseline) slot, loaded when the
    baseline's rows come to the bin and stored when they leave it (at the end of the call, or with the
    slots kept across calls by the caller, at flush_runs).  Bit for bit the sums of adding every
    sample in place -- the general kernel on the same bin-major sums, and the hands kernel's
    row-major sums transposed -- with runs of one row that come back to a slot (random bins), long
    runs (bins in scans), several calls on the same sums (chunks) and the per-row weight totals."""
    c = _case(zlib.crc32(repr((use, freq, order, splits)).encode()) % 1000)
    fsamp = {"per_chan": np.arange(N_CHAN), "grouped": np.arange(N_CHAN) // 5}[freq].copy()
    fsamp[3] = -1                                                  # a channel not used
    sbin = c["sbin"] if order == "random" else np.minimum(np.arange(len(c["a1"])) * 3 // len(c["a1"]), 2)
    sbin = sbin.copy()
    sbin[::17] = -1                                                # rows skipped inside runs
    u = np.asarray(USES[use], bool)
    new = _acc_bin_major(monkeypatch, True, c, fsamp, u, sbin, splits, keep)
    old = _acc_bin_major(monkeypatch, False, c, fsamp, u, sbin, splits, keep)
    c_rm = dict(c, sbin=sbin)
    rm = _acc(monkeypatch, True, c_rm, fsamp, u, True, True)     # row-major (bin, bl, fs, 4), one call
    assert (new[2] > 0).any()
    for x, y in zip(new[:3], old[:3]):
        np.testing.assert_array_equal(x, y)
    if splits == 1:
        for x, y in zip(new[:3], rm[:3]):
            np.testing.assert_array_equal(x, np.ascontiguousarray(y.transpose(2, 1, 0, 3)))
    np.testing.assert_allclose(new[3], old[3], rtol=1e-13)
    assert ((new[3] == 0) == (old[3] == 0)).all()
    assert (new[0][..., ~u] == 0).all() and (new[2][..., ~u] == 0).all()


def test_bin_major_kept_slots_stored_before_the_general_kernel(monkeypatch):
    """Slots kept from a hands-kernel call are stored before a call that takes the general kernel
    (a sky table per channel: a D in CP's model) adds to the same sums in place: the sums equal
    adding every sample in place."""
    c = _case(77)
    fsamp = np.arange(N_CHAN)
    u = np.asarray(USES["cross"], bool)
    n_bl = N_ANT * (N_ANT - 1) // 2
    sky_chan = np.repeat(c["p"], N_CHAN, axis=2)                  # P per channel: the general kernel
    halves = np.array_split(np.arange(len(c["a1"])), 2)
    out = []
    for kept in (True, False):
        owners = tuple(np.zeros((N_CHAN, n_bl, 3, 4), dt) for dt in (complex, complex, float))
        sums = tuple(a.transpose(2, 1, 0, 3) for a in owners)
        runs = averaging.bin_runs(n_bl, N_CHAN, u) if kept else None
        w_row = np.zeros(len(c["a1"]))
        for part, sky in zip(halves, (c["p"], sky_chan)):
            averaging.accumulate_corrected(*sums, w_row, c["data"], c["model"], c["flag"], c["weight"], part,
                                           c["tidx"], c["a1"], c["a2"], c["sbin"], c["row_bl"], fsamp,
                                           diag=c["diag"], sky=sky, corr_use=u, runs=runs)
        if kept:
            assert (runs[3] < 0).all()
            averaging.flush_runs(*sums, runs)
        out.append(owners)
    assert (out[0][2] > 0).any()
    for x, y in zip(*out):
        np.testing.assert_array_equal(x, y)
