"""Review of merge 34ecbd4 (cellflags 1a./1c.: per-baseline scatter for live baselines, lag-one channel
coherence for baselines/rows without signal).  Three regressions against 89081ec (main before the merge):

1. An antenna dying *within* a block of 8 integrations, <= 100 channels: 1a.'s row test needs the
   baseline's other rows to have a median t >= STRONG_ROW_T = 100, but a row's t is at most its number
   of channel pairs (n_chan - 1), so it never fires below 101 channels; the segment's t (summed over its
   rows) is still >= LIVE_T, so 1c. judges the baseline against its own scatter -- inflated by the dead
   rows -- and they pass.  G(scan, 'ap'), per-sample SNR 10, 64 channels, C02 dead from the 6th of 10
   integrations: |g/g_true - 1| of C02 0.0025 at 89081ec, 0.41 after the merge (unflagged).
2. A noisier antenna at a low per-sample SNR is taken for a dead one by 1a. (t < DEAD_T while another
   baseline shows the source at 10 sigma) and all its samples flagged: fraction of its clean samples
   flagged at 89081ec / after: SNR 3 x 10 noise 4.0% / 100%, SNR 3 x 5 3.3% / 38%, SNR 2 x 5 1.1% / 99%,
   SNR 2 x 3 0.7% / 16%; akcal G per integration at SNR 3 x 10: 0 / 100% of its solutions flagged (the
   unflagged solve's error 0.16, i.e. solvable)."""

import os
import sys
import types

import numpy as np
import pytest

from alakazam.core import cellflags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from one_antenna_ms import antenna_ms, solve_g  # noqa: E402  (tests/one_antenna_ms.py)

CORR = ["XX", "XY", "YX", "YY"]
PAR = [0, 3]


def _chunk(seed, n_ant=7, n_chan=64, n_int=16, snr=50.0, loud=None, dead=None, die_at=None):
    """Point source of 1 Jy, gains 0.8-1.2, smooth bandpasses, noise per part 1 / (snr sqrt 2) (per-sample
    SNR ``snr``), ``loud`` {antenna: factor} on its baselines, ``dead`` antennas noise-only from
    integration ``die_at`` on.  Returns (chunk, dead mask, ant1, ant2)."""
    rng = np.random.default_rng(seed)
    a1, a2 = np.triu_indices(n_ant, 1)
    rows = np.array([(t, p, q) for t in range(n_int) for p, q in zip(a1, a2)])
    it, r1, r2 = rows.T
    n = len(rows)
    g = rng.uniform(0.8, 1.2, n_ant) * np.exp(2j * np.pi * rng.random(n_ant))
    bp = 1 + 0.1 * np.sin(np.arange(n_chan)[None] / 9 + rng.uniform(0, 6, (n_ant, 1)))
    vis = (g[r1, None] * bp[r1]) * np.conj(g[r2, None] * bp[r2])
    sig0 = 1 / (snr * np.sqrt(2))
    fac = np.ones(n)
    for a, f in (loud or {}).items():
        fac *= np.where((r1 == a) | (r2 == a), f, 1.0)
    sig = (sig0 * fac)[:, None, None] * np.ones((1, n_chan, 4))
    data = vis[:, :, None] * np.array([1, 0, 0, 1]) + sig * (rng.standard_normal(sig.shape)
                                                              + 1j * rng.standard_normal(sig.shape))
    dm = np.zeros(data.shape, bool)
    if dead:
        rr = (np.isin(r1, dead) | np.isin(r2, dead)) & (it >= (die_at or 0))
        data[rr] = sig0 * (rng.standard_normal(data[rr].shape) + 1j * rng.standard_normal(data[rr].shape))
        dm[rr] = True
    model = np.zeros(data.shape, np.complex64)
    model[..., 0] = model[..., 3] = 1
    ch = types.SimpleNamespace(data=data.astype(np.complex64), model=model, flag=np.zeros(data.shape, bool),
                               weight=(1 / sig ** 2).astype(np.float32), scan=np.ones(n, int),
                               time=10.0 * it, ant1=r1, ant2=r2, n_row=n)
    return ch, dm, r1, r2


@pytest.mark.parametrize("snr,n_chan,old", [(10, 16, 0.014), (20, 32, 0.0), (20, 64, 0.088)])
def test_antenna_dying_within_a_block_is_flagged(snr, n_chan, old):
    """C02 dead from the 6th of 8 integrations (one block): the fraction of its dead parallel-hand samples
    kept, 2 seeds -- 89081ec 1.4% / 0 / 8.8%, after the merge 35% / 31% / 54% (128+ channels: 0)."""
    kept = []
    for seed in range(2):
        ch, dm, _, _ = _chunk(seed, n_chan=n_chan, n_int=8, snr=snr, dead=[2], die_at=5)
        f = cellflags.flag_chunk(ch, CORR, 5.0)[..., PAR]
        kept.append((~f[dm[..., PAR]]).mean())
    # 16 channels (15 channel pairs per row: a row's t cannot reach DEAD_T) the prototype fix of this
    # branch leaves 8.9% (its dying rows only make the baseline not 'live': the common scatter of 1b.)
    assert np.mean(kept) <= max(1.5 * old, 0.05 if n_chan > 16 else 0.1), np.mean(kept)


@pytest.mark.parametrize("snr,loud", [(3, 10), (3, 5), (2, 5), (2, 3)])
def test_noisy_antenna_at_low_snr_is_not_taken_for_dead(snr, loud):
    """Clean data, C02 at ``loud`` x the noise: its samples flagged at most 5% (89081ec 4.4% / 3.8% / 1.2% /
    0.8%; after the merge 100% / 30% / 96% / 12%, 3 seeds, 7 antennas x 64 channels x 16 integrations)."""
    got = []
    for seed in range(3):
        ch, _, r1, r2 = _chunk(seed, snr=snr, loud={2: loud})
        f = cellflags.flag_chunk(ch, CORR, 5.0)[..., PAR]
        got.append(f[(r1 == 2) | (r2 == 2)].mean())
    assert np.mean(got) <= 0.05, np.mean(got)


def test_gain_of_an_antenna_dying_within_a_scan(tmp_path):
    """G(scan, 'ap'), SNR 10 per sample, 64 channels, C02 noise-only from the 6th of each scan's 10
    integrations: its amplitude |g / g_true| within 2% (89081ec: 0.25%; after the merge: 41% off,
    unflagged -- the four dead-antenna regressions' failure, in a block)."""
    ms = str(tmp_path / "die.ms")
    g, field = antenna_ms(ms, 10.0, 64, dead=True, die_at=5)
    jones, flags = solve_g(ms, str(tmp_path / "die.h5"), field, "scan")
    amp = np.abs(jones[2]) / np.abs(g[2])[None]
    assert (flags[2] | (np.abs(amp - 1) < 0.02)).all(), amp


def test_noisy_antenna_at_low_snr_keeps_its_gains(tmp_path):
    """G per integration, SNR 3 per sample, C02 at 10x the noise (SIGMA saying so): its solutions are
    solvable (the solve without flags: median error 0.16) -- 89081ec flags none, the merge all."""
    ms = str(tmp_path / "loud.ms")
    _, field = antenna_ms(ms, 3.0, 64, loud=10.0)
    _, flags = solve_g(ms, str(tmp_path / "loud.h5"), field, "int")
    assert flags[2].mean() < 0.1, flags[2].mean()


def test_partly_flagged_integration_keeps_its_clean_channels():
    """3. One integration with 240 of its 256 channels flagged in the MS (every baseline): its row t is at
    most its 15 channel pairs < DEAD_T = 16, while the baseline's other rows have a median t >= 100, so
    1a. flags its 16 clean channels as 'no signal' (after the merge: 100% of them; 89081ec: 0)."""
    fr = []
    for seed in range(2):
        ch, _, _, _ = _chunk(seed, n_chan=256, n_int=8, snr=20)
        it = (ch.time / 10).astype(int)
        ch.flag[it == 3, :240] = True
        f = cellflags.flag_chunk(ch, CORR, 5.0)[..., PAR]
        fr.append(f[it == 3][:, 240:].mean())
    assert np.mean(fr) <= 0.05, np.mean(fr)
