"""Solve-time flags, stage 1a. (core/cellflags.py): baselines and rows that carry no signal.

The statistic: per row and parallel hand the lag-one channel coherence of z = V conj(M), the unit
phasors u_c of z_{c+1} conj(z_c) over Q pairs, t = |sum u_c|^2 / Q -- ~Exp(1) for noise, ~Q rho^2
with signal, blind to a delay (a constant phase step between channels) and to the strength of an
RFI channel.  A dead hand is flagged in its own
correlation and the cross hands only: the antenna's other feed keeps its data.
"""

import os
import sys
import types

import numpy as np
from casacore.tables import table

from alakazam.core import cellflags
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CORR = ["XX", "XY", "YX", "YY"]


def _coh(z):
    """(Re S, Im S, Q) of one row's z (n_chan,) -- the definition of the statistic: the unit phasors of
    the lag-one products, their number."""
    p = z[1:] * np.conj(z[:-1])
    s = np.sum(p / np.abs(p))
    return np.array([s.real, s.imag, len(p)])


def test_statistic_noise_is_exp1_and_blind_to_a_delay():
    """The kernel's sums equal the definition; t of noise has mean 1 and P(t > 16) ~ 1e-7 (none in
    20000 draws); a 300 ns delay over 64 x 1 MHz channels (several turns) leaves t of a live row at
    its no-delay value."""
    rng = np.random.default_rng(3)
    n = 64
    ts = []
    for _ in range(20000):
        z = rng.normal(size=n) + 1j * rng.normal(size=n)
        c = _coh(z)
        ts.append((c[0] ** 2 + c[1] ** 2) / c[2])
    ts = np.array(ts)
    assert abs(ts.mean() - 1) < 0.05 and ts.max() < 16
    nu = 1e9 + 1e6 * np.arange(n)
    noise = 0.3 * (rng.normal(size=n) + 1j * rng.normal(size=n))
    flat, slope = _coh(1 + noise), _coh(np.exp(-2j * np.pi * 300e-9 * nu) * (1 + noise))
    t = [(c[0] ** 2 + c[1] ** 2) / c[2] for c in (flat, slope)]
    assert t[0] > 30 and abs(t[1] - t[0]) < 1e-6 * t[0]


def test_no_signal_rules():
    """Segments (baselines) and rows: dead only next to a baseline that sees the source at 10 sigma;
    live (own scatter) only from 6 sigma; a row of a live baseline dead when its other rows are strong."""
    n_rows = 8

    def seg(t_rows):
        return np.array([[[np.sqrt(t), 0.0, 1.0]] for t in t_rows])        # t = S^2 / Q per row

    strong, weak, noise = [1000.0] * n_rows, [6.0] * n_rows, [0.5] * n_rows     # t per row
    partial = [1000.0] * 6 + [0.5, 0.5]

    def run(*segs):
        coh = np.concatenate([seg(s) for s in segs])
        sbl = np.arange(0, n_rows * (len(segs) + 1), n_rows)
        return cellflags._no_signal(coh, np.arange(len(coh)), sbl)

    dead, live = run(strong, noise, weak)
    assert not dead[:8].any() and dead[8:16].all() and not dead[16:].any()
    assert live[0].tolist() == [True, False, True]          # weak: 6 x 8 = 48 >= 36
    dead, live = run(weak, noise)              # best t_seg 48 < 100: nothing dead
    assert not dead.any()
    dead, _ = run(strong, partial)
    assert dead[:, 0].tolist() == [False] * 8 + [False] * 6 + [True, True]


def test_dead_feed_flags_its_hand_only(tmp_path):
    """Antenna C03's YY and cross hands replaced by noise (its X feed alive, FLAG False): YY and the
    cross hands of its baselines are flagged, its XX kept (newly flagged at the others' rate); the
    others untouched beyond the clean rate."""
    ms = str(tmp_path / "f.ms")
    tr = simulate_ms(ms, n_ant=6, n_ant_extra=0, n_chan=(64,), duration_h=1.0, int_s=30.0, feed="linear",
                     dead_ant=False, flag_rows=0.0, seed=11)
    with table(ms + "/ANTENNA", ack=False) as t:
        a = list(t.getcol("NAME")).index("C03")
    with table(ms, readonly=False, ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        data = t.getcol("DATA")
        rows = (a1 == a) | (a2 == a)
        rng = np.random.default_rng(2)
        shape = data[rows][..., 1:].shape
        data[np.ix_(rows, np.arange(data.shape[1]), [1, 2, 3])] = tr.noise * (rng.normal(size=shape) +
                                                                              1j * rng.normal(size=shape))
        t.putcol("DATA", data)

    class Chunk:
        pass

    ch = Chunk()
    with table(ms, ack=False) as t:
        ch.data, ch.model, ch.flag = t.getcol("DATA"), t.getcol("MODEL_DATA"), t.getcol("FLAG")
        ch.ant1, ch.ant2, ch.scan, ch.time = a1, a2, t.getcol("SCAN_NUMBER"), t.getcol("TIME")
    ch.weight = np.ones(ch.data.shape, np.float32)
    ch.n_row = len(a1)
    f = cellflags.flag_chunk(ch, CORR, 5.0)
    new = f & ~ch.flag
    cross = a1 != a2
    on = rows & cross
    print(f"C03 YY {new[on][..., 3].mean():.4f} cross {new[on][..., 1:3].mean():.4f} "
          f"XX {new[on][..., 0].mean():.5f}; others {new[~rows & cross].mean():.5f}")
    assert new[on][..., 1:].mean() > 0.999
    assert new[on][..., 0].mean() < 2e-3
    assert new[~rows & cross].mean() < 2e-3


def test_rfi_channel_does_not_make_live_rows_signal_free(monkeypatch):
    """A persistent RFI channel of 20x the source, random phase, in every row (130 channels, SNR 10 per
    sample): no row or baseline is taken for signal-free (with |z_{c+1} conj(z_c)|-weighted sums instead
    of unit phasors, rows of this chunk were); the same chunk without signal on one baseline: that
    baseline is."""
    rng = np.random.default_rng(4)
    n_ant, n_int, n_chan = 7, 9, 130
    a1, a2 = np.triu_indices(n_ant, 1)
    ant1, ant2 = np.tile(a1, n_int), np.tile(a2, n_int)
    n = len(ant1)
    tau = rng.uniform(-20e-9, 20e-9, n_ant)
    ph = np.exp(-2j * np.pi * (tau[ant1] - tau[ant2])[:, None] * 1e6 * np.arange(n_chan))
    shape = (n, n_chan, 4)
    data = ph[..., None] * (1 + 0.1 * (rng.normal(size=shape) + 1j * rng.normal(size=shape)))
    data[:, 5] += 20 * np.exp(2j * np.pi * rng.random((n, 4)))
    calls = []
    real = cellflags._flag_no_signal
    monkeypatch.setattr(cellflags, "_flag_no_signal", lambda *a: calls.append(a[4].copy()) or real(*a))

    def run(d):
        calls.clear()
        ch = types.SimpleNamespace(data=d.astype(np.complex64), model=np.ones((n, n_chan, 4), np.complex64),
                                   flag=np.zeros((n, n_chan, 4), bool), weight=np.ones((n, n_chan, 4)),
                                   scan=np.ones(n, int), time=np.repeat(np.arange(n_int) * 10.0, len(a1)),
                                   ant1=ant1, ant2=ant2, n_row=n)
        return cellflags.flag_chunk(ch, CORR, 5.0)

    f0 = run(data)
    assert calls == []
    bl = (ant1 == 2) & (ant2 == 4)
    data[bl] = 0.1 * (rng.normal(size=data[bl].shape) + 1j * rng.normal(size=data[bl].shape))
    f = run(data)
    assert len(calls) == 1 and calls[0].sum() == 2 * n_int                    # both hands, every row
    print("others' flags outside the RFI channel", f[~bl][:, np.r_[0:4, 7:n_chan]].mean(), "before",
          f0[~bl][:, np.r_[0:4, 7:n_chan]].mean(), "differ", (f[~bl] != f0[~bl]).sum())
    assert f[bl].all() and np.array_equal(f[~bl], f0[~bl])
