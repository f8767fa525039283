"""One-bin terms evaluated once, not copied to every channel (issue 16; chain.term_tables(chan_one),
chain.compose(sky_chan_one), algebra.compose_inverse_table with a 1-channel S).

* compose_inverse_table with S of one channel equals it with S broadcast to every channel, bit for bit.
* The six-term apply (K, bandpass, G with linear time interpolation, KC, CP, D; parallactic angle;
  calflag) writes the same CORRECTED_DATA and FLAG, bit for bit, as with every table per channel.
"""

import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration import chain
from alakazam.jones import algebra

RNG = np.random.default_rng(24)


def _crandn(*shape):
    return RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)


@pytest.mark.parametrize("with_p", [False, True])
def test_compose_inverse_with_one_channel_of_s_equals_broadcast(with_p):
    n_t, n_ant, n_chan = 3, 4, 6
    d = _crandn(n_t, n_ant, n_chan, 2)
    s1 = _crandn(n_t, n_ant, 1, 2, 2)
    s1[1, 2, 0] = 0                                     # singular
    p = _crandn(n_t, n_ant, 2, 2) if with_p else None
    s_full = np.ascontiguousarray(np.broadcast_to(s1, (n_t, n_ant, n_chan, 2, 2)))
    ref, ref_ok = algebra.compose_inverse_table(n_t, n_ant, n_chan, d, s_full, p)
    inv, ok = algebra.compose_inverse_table(n_t, n_ant, n_chan, d, s1, p)
    np.testing.assert_array_equal(ok, ref_ok)
    assert np.array_equal(inv.view(np.float64), ref.view(np.float64), equal_nan=True)
    assert not ok.all()


def test_six_term_apply_equals_per_channel_tables(small_chain_table, tmp_path, monkeypatch):
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict

    ms0, cal, _ = small_chain_table
    outs = {}
    real = chain.compose
    seen = []
    for mode in ("one", "full"):
        ms = str(tmp_path / f"{mode}.ms")
        shutil.copytree(ms0, ms)

        def compose(*a, **k):
            if mode == "full":
                k["sky_chan_one"] = False
            d, s = real(*a, **k)
            if s is not None:
                seen.append((mode, s.shape[2]))
            return d, s

        monkeypatch.setattr(chain, "compose", compose)
        run_apply(apply_config_from_dict(dict(
            ms=ms, apply_parang=True, propagate_flags=True, quiet=True,
            jones=["K0", "G0", "G1", "KC0", "CP0", "D0"], tables=[cal] * 6,
            time_interp=["nearest", "nearest", "linear", "nearest", "nearest", "nearest"])))
        outs[mode] = []
        with table(ms, ack=False) as t:
            for dd in sorted(set(t.getcol("DATA_DESC_ID"))):      # SPWs of 8 and 4 channels: per DDID
                q = t.query(f"DATA_DESC_ID=={dd}")
                outs[mode] += [q.getcol("CORRECTED_DATA"), q.getcol("FLAG")]
                q.close()
    assert ("one", 1) in seen and all(n > 1 for m, n in seen if m == "full")
    for a, b in zip(outs["one"], outs["full"]):
        if a.dtype.kind == "c":
            assert np.array_equal(a.view(np.float32), b.view(np.float32), equal_nan=True)
            assert np.isfinite(a).any()
        else:
            np.testing.assert_array_equal(a, b)
