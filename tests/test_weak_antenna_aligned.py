"""Solve-time flags, 1a.: a weak antenna's first-order test with its baselines' delays aligned
(core/cellflags.py ``_aligned_signal``, called by ``_weak_antennas``).

A live antenna much noisier than the others (10x at a per-sample SNR of 2: 0.2 on its baselines) has no
baseline whose lag-one coherence shows the source, so 1a. asks the first-order test (the delay spectrum of
the unit phasors of V conj(M)).  Per baseline, a search over L delays (Bonferroni) then Fisher's
combination over the antenna's baselines found it in about half of the blocks, and the rest of its
samples were flagged as a dead antenna's.  A baseline's delay is its antennas' difference: with the
delays of the live baselines between a reference partner b0 and the others, the antenna's baselines'
spectra line up on one unknown delay and add up -- Gamma(sum R, 1) for noise at every delay, so a dead
antenna stays dead at the same false-alarm probability."""

import os
import sys

import numpy as np
import pytest

from alakazam.core import cellflags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_antenna_levels import CORR, PAR, _chunk  # noqa: E402  (the chunk of tests/test_antenna_levels.py)


def _flags(ch, aligned, monkeypatch):
    """flag_chunk's parallel-hand flags, with the aligned test (as is) or without it."""
    with monkeypatch.context() as mp:
        if not aligned:
            mp.setattr(cellflags, "_aligned_signal", lambda *a: False)
        return cellflags.flag_chunk(ch, CORR, 5.0)[..., PAR]


def _noise_only(ch, ant, scans, loud, snr, seed=5):
    """Antenna ``ant``'s baselines noise-only (``loud`` x the noise of a per-sample SNR ``snr``) in
    ``scans``: its dead rows."""
    on = ((ch.ant1 == ant) | (ch.ant2 == ant)) & np.isin(ch.scan, scans)
    rng = np.random.default_rng(seed)
    shape = ch.data[on].shape
    sig = loud / (snr * np.sqrt(2))
    ch.data[on] = (sig * (rng.normal(size=shape) + 1j * rng.normal(size=shape))).astype(np.complex64)
    return on


def test_noisy_live_antenna_kept():
    """7 antennas, 64 channels x 8 integrations x 4 scans, SNR 2, antenna 2 at 10x the noise (gains of
    0.6-1.4 and delays of a few turns): measured over seeds 0-7, 16% of its parallel-hand samples
    flagged (the low-gain hands of seeds 1, 3, 5, 7: 13-50%), 41% without the alignment (seed 3
    everything); the other antennas' samples flagged as before.  Seeds 2 and 4: 13% / 51% -> 0.3% /
    2%."""
    for seed, most in ((2, 0.01), (4, 0.03)):
        ch, _ = _chunk(7, 64, 8, 2.0, seed, loud=10.0)
        on2 = (ch.ant1 == 2) | (ch.ant2 == 2)
        f = cellflags.flag_chunk(ch, CORR, 5.0)[..., PAR]
        assert f[on2].mean() < most, (seed, f[on2].mean())
        assert f[~on2].mean() < 1e-3


def test_without_alignment_the_noisy_antenna_was_flagged(monkeypatch):
    """The same chunks without the aligned test: the hole it closes (13% / 51% flagged)."""
    for seed in (2, 4):
        ch, _ = _chunk(7, 64, 8, 2.0, seed, loud=10.0)
        on2 = (ch.ant1 == 2) | (ch.ant2 == 2)
        assert _flags(ch, False, monkeypatch)[on2].mean() > 0.1


@pytest.mark.parametrize("loud", [1.0, 10.0])
@pytest.mark.parametrize("seed", [0, 3])
def test_antenna_dead_for_the_whole_chunk_still_flagged(loud, seed):
    """Antenna 2 noise-only in every scan (at the array's noise or 10x it): every sample of it flagged,
    as without the alignment (pure noise lines up on no delay)."""
    ch, _ = _chunk(7, 64, 8, 2.0, seed, loud=loud)
    dead = _noise_only(ch, 2, [1, 2, 3, 4], loud, 2.0)
    assert cellflags.flag_chunk(ch, CORR, 5.0)[dead].all()


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_noisy_antenna_dead_in_one_block(seed, monkeypatch):
    """Antenna 2 at 10x the noise, live, and noise-only in scan 2: each block is decided alone, so the
    dead block is flagged (every sample) and the live ones are kept as in a chunk without the dead scan
    (measured, seeds 0-7: the dead block always flagged; the live blocks 0.3-50% flagged, as the
    antenna's hands in the all-live chunk)."""
    ch, _ = _chunk(7, 64, 8, 2.0, seed, loud=10.0)
    live_ch, _ = _chunk(7, 64, 8, 2.0, seed, loud=10.0)
    dead = _noise_only(ch, 2, [2], 10.0, 2.0)
    f = cellflags.flag_chunk(ch, CORR, 5.0)
    assert f[dead].all()
    g = cellflags.flag_chunk(live_ch, CORR, 5.0)
    on2 = (ch.ant1 == 2) | (ch.ant2 == 2)
    assert (f[on2 & ~dead & (ch.scan != 2)] == g[on2 & ~dead & (ch.scan != 2)]).all()


def _spectra_case(offsets, amp, seed, L=128, R=8):
    """Antenna 0 and partners 1-6 (seg_ants all pairs, every pair of partners live): antenna 0's
    baselines' delay spectra (sums of R rows of Exp(1) noise) with ``amp`` x R added at the delay of its
    baseline to partner b, tau_0 - tau_b + offsets[b - 1] (delay bins of L); the partners' baselines'
    spectra (from ``first_order``) with a strong peak at tau_b - tau_c.  (args of _aligned_signal)"""
    rng = np.random.default_rng(seed)
    tau = rng.integers(0, L, 7)
    p, q = np.triu_indices(7, 1)
    spectra = {}
    for s, (i, j) in enumerate(zip(p, q)):
        if i == 0:
            f = rng.gamma(R, 1.0, L)
            f[(tau[0] - tau[j] + offsets[j - 1]) % L] += amp * R
            spectra[s] = (f, float(R))

    def first_order(segs, spectra=None):
        for s in segs:
            f = rng.gamma(R, 1.0, L)
            f[(tau[p[s]] - tau[q[s]]) % L] += 50 * R
            spectra[s] = (f, float(R))
        return np.full(len(segs), 1e-30)

    sa = np.flatnonzero(p == 0)
    tlive = p != 0
    return 0, sa, p, q, tlive, first_order, spectra


def test_aligned_signal_decision():
    """Synthetic spectra (64 channels, L = 128, 8 rows per baseline): 1.4 R extra power at each baseline's
    own delay -- per baseline 128 Q(8, 19.2) = 0.17, invisible -- is signal once aligned (at most 6 x 128
    alignments tried, 768 Q(48, 115) = 4e-10; measured 18 of 20 draws); the same power at delays that are
    not the antennas' differences, or none, is not."""
    hits_aligned = sum(cellflags._aligned_signal(*_spectra_case(np.zeros(6, int), 1.4, s)) for s in range(20))
    assert hits_aligned >= 17
    rng = np.random.default_rng(1)
    hits_scrambled = sum(cellflags._aligned_signal(*_spectra_case(rng.integers(5, 120, 6), 1.4, s))
                         for s in range(20))
    assert hits_scrambled == 0
    assert not any(cellflags._aligned_signal(*_spectra_case(np.zeros(6, int), 0.0, s)) for s in range(50))


def test_aligned_signal_without_a_live_partner_pair():
    """No live baseline between the partners: the delays are not known, no decision (False)."""
    a, sa, p, q, tlive, first_order, spectra = _spectra_case(np.zeros(6, int), 3.0, 0)
    assert not cellflags._aligned_signal(a, sa, p, q, np.zeros_like(tlive), first_order, spectra)
