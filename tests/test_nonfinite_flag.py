"""akflag's rflag and tfcrop flag the samples whose data are NaN or infinite, as flagdata's mode='clip'
run before them would (review h60b: a NaN in DATA was left unflagged by akflag's rflag and reached
CORRECTED_DATA).

Measured against CASA 6.7 (flagdata, defaults, a 300-row x 32-channel x 4-correlation simulated MS,
one NaN sample): flagdata's rflag and tfcrop leave a NaN sample unflagged (rflag flags an infinite one,
or a NaN whose other part deviates, through its comparisons; tfcrop none of them), and the NaN upsets
rflag's automatic thresholds of its chunk: 3244 flags in place of 5540 without the NaN (2296 lost, all
in the NaN's scan; akflag, which sorts NaN last, lost 176).  That is no behaviour to copy: akflag leaves
the non-finite samples out of every statistic and flags them -- its flags are then flagdata's
``clip`` followed by ``rflag`` / ``tfcrop``, sample for sample (:func:`test_matches_casa_clip_first`;
the extension after the mode covers them as CASA's does: extendpols flags the NaN's row and channel in
every correlation).  The other data-driven modes, mad and aoflagger, flagged them already."""

import os
import shutil
import sys

import numpy as np
import pytest
from casacore.tables import table

from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(__file__))
from casa_python import run_casa  # noqa: E402  (tests/casa_python.py)

#: (row, channel, correlation, value) of the injected samples (rows of scan 1, cross-correlations)
BAD = ((50, 10, 0, complex(np.nan, np.nan)), (53, 20, 3, complex(np.nan, 0.0)),
       (57, 5, 1, complex(np.inf, 1.0)))


@pytest.fixture(scope="module")
def clean_ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("nonfinite")
    ms = str(d / "clean.ms")
    simulate_ms(ms, feed="circular", n_ant=5, n_ant_extra=0, n_chan=(32,), int_s=60.0, scan_len_s=600.0,
                duration_h=0.5, noise=0.05, seed=7, leakage=False, flag_rows=0.0, dead_ant=False)
    return ms


@pytest.fixture(scope="module")
def nan_ms(clean_ms):
    ms = os.path.join(os.path.dirname(clean_ms), "nan.ms")
    shutil.copytree(clean_ms, ms)
    with table(ms, readonly=False, ack=False) as t:
        assert not t.getcol("FLAG").any()
        for r, c, k, v in BAD:
            assert t.getcell("ANTENNA1", r) != t.getcell("ANTENNA2", r)
            d = t.getcell("DATA", r)
            d[c, k] = v
            t.putcell("DATA", r, d)
    return ms


def _copy(src, dst):
    shutil.copytree(src, str(dst))
    return str(dst)


def _flags(ms):
    with table(ms, ack=False) as t:
        return t.getcol("FLAG")


@pytest.mark.parametrize("mode", ["rflag", "tfcrop"])
@pytest.mark.parametrize("extend", [False, True])
def test_nonfinite_samples_are_flagged_as_clip_first(nan_ms, tmp_path, mode, extend, caplog):
    """Every NaN / Inf sample is flagged, and the flags are those of mode='clip' then the mode (the
    non-finite samples out of the statistics); without extendflags only the sample itself is added."""
    import logging

    from alakazam.caltasks import akflag

    ms = _copy(nan_ms, tmp_path / "a.ms")
    with caplog.at_level(logging.INFO):
        akflag(vis=ms, mode=mode, extendflags=extend)
    got = _flags(ms)
    for r, c, k, _ in BAD:
        assert got[r, c, k], (mode, r, c, k)
        if extend:                                  # extendpols: the sample's every correlation
            assert got[r, c].all(), (mode, r, c)
    assert f"akflag mode={mode}: 3 samples whose" in caplog.text and "NaN or infinite" in caplog.text

    ref = _copy(nan_ms, tmp_path / "b.ms")
    akflag(vis=ref, mode="clip")
    assert _flags(ref).sum() == len(BAD)
    akflag(vis=ref, mode=mode, extendflags=extend)
    np.testing.assert_array_equal(got, _flags(ref))


def test_finite_data_say_nothing(clean_ms, tmp_path, caplog):
    """Without a non-finite sample nothing is said (the flags are those the parity tests measure)."""
    import logging

    from alakazam.caltasks import akflag

    ms = _copy(clean_ms, tmp_path / "c.ms")
    with caplog.at_level(logging.INFO):
        akflag(vis=ms, mode="rflag")
    assert "akflag mode=rflag" in caplog.text and "NaN or infinite" not in caplog.text


@pytest.mark.parametrize("mode", ["mad", "aoflagger"])
def test_mad_and_aoflagger_flag_them_too(nan_ms, tmp_path, mode):
    from alakazam.caltasks import akflag

    ms = _copy(nan_ms, tmp_path / "m.ms")
    akflag(vis=ms, mode=mode)
    got = _flags(ms)
    assert all(got[r, c, k] for r, c, k, _ in BAD), mode


_CASA = """
import shutil
from casatasks import flagdata
for mode in ('rflag', 'tfcrop'):
    for ext in (False, True):
        tag = f'{mode}_{int(ext)}'
        shutil.copytree('nan.ms', f'plain_{tag}.ms')
        flagdata(vis=f'plain_{tag}.ms', mode=mode, extendflags=ext, flagbackup=False)
        shutil.copytree('nan.ms', f'clip_{tag}.ms')
        flagdata(vis=f'clip_{tag}.ms', mode='clip', flagbackup=False)
        flagdata(vis=f'clip_{tag}.ms', mode=mode, extendflags=ext, flagbackup=False)
"""


def test_matches_casa_clip_first(nan_ms, tmp_path):
    """CASA 6.7 (skipped without it): flagdata's rflag / tfcrop leave the NaN sample unflagged; akflag's
    flags equal flagdata's clip then rflag / tfcrop, with and without extendflags."""
    from alakazam.caltasks import akflag

    _copy(nan_ms, tmp_path / "nan.ms")
    run_casa(_CASA, tmp_path)
    r, c, k, _ = BAD[0]                             # NaN in both parts
    for mode in ("rflag", "tfcrop"):
        for ext in (False, True):
            tag = f"{mode}_{int(ext)}"
            plain, clip = _flags(str(tmp_path / f"plain_{tag}.ms")), _flags(str(tmp_path / f"clip_{tag}.ms"))
            assert not plain[r, c, k], f"CASA's {mode} now flags a NaN sample: README, Flagging to update"
            ms = _copy(nan_ms, tmp_path / f"ak_{tag}.ms")
            akflag(vis=ms, mode=mode, extendflags=ext)
            got = _flags(ms)
            print(f"{tag}: CASA plain {plain.sum()}, CASA clip+{mode} {clip.sum()}, akflag {got.sum()}")
            np.testing.assert_array_equal(got, clip, err_msg=tag)
