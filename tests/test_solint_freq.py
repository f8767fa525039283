"""akcal solint in CASA's 'time,freq' form (bandpass/gaincal: solint='inf,2MHz'): the freq part is that
step's freqint (caltasks/akcal.py _solint_freq)."""

import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.errors import ParameterError
from alakazam.io import hdf5


def _table(path, key):
    return sorted(hdf5.read_term(path, key), key=lambda s: (s.field_name, s.scan_id, s.spw))


def test_solint_time_freq_equals_solint_and_freqint(sim_linear, tmp_path):
    ms, _ = sim_linear
    kw = dict(vis=ms, refant="C00", jones=["G", "G"], field="3C286", minblperant=0)
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    akcal(caltable=a, solint=["scan", "inf,2MHz"], **kw)
    akcal(caltable=b, solint=["scan", "inf"], freqint=["full", "2MHz"], **kw)
    for key in ("G0", "G1"):
        for x, y in zip(_table(a, key), _table(b, key)):
            assert x.jones.shape == y.jones.shape
            assert np.array_equal(x.flags, y.flags)
            np.testing.assert_array_equal(x.jones[~x.flags], y.jones[~y.flags])
    assert _table(a, "G1")[0].jones.shape[1] > 1              # per 2 MHz bins: several
    # one value for every step; a freqint equal to the freq part is accepted
    akcal(caltable=str(tmp_path / "c.h5"), solint="inf,2MHz", freqint="2MHz", **dict(kw, jones=["G"]))


def test_solint_freq_part_disagreeing_with_freqint_is_named_with_every_other_error(sim_linear, tmp_path):
    ms, _ = sim_linear
    out = str(tmp_path / "x.h5")
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=out, refant="C00", jones=["G"], field="3C286", solint="inf,2MHz",
              freqint="4MHz", calmode="x")
    msg = str(e.value)
    assert "solint: 'inf,2MHz': its frequency part '2MHz' and freqint '4MHz' (step 0) disagree" in msg
    assert "calmode" in msg
    with pytest.raises(ParameterError,
                       match=r"solint: 'inf,banana': its frequency part: 'banana' is not a frequency"):
        akcal(vis=ms, caltable=out, refant="C00", jones=["G"], field="3C286", solint="inf,banana")
    import os
    assert not os.path.exists(out)


def test_freq_interval_in_channels(sim_linear, tmp_path):
    """'4ch' (CASA's solint 'inf,4ch', accepted by CASA 6.7 bandpass, measured) is 4 channels per
    solution bin whatever their width: the same bins, solutions and flags as the equivalent width in Hz,
    and freqint_hz = 4 x the channel width."""
    from alakazam.config import Channels, parse_freq_interval
    from alakazam.plan import freq_bins

    assert parse_freq_interval("4ch") == (4, "4ch") and isinstance(parse_freq_interval("4 chan")[0], Channels)
    with pytest.raises(Exception, match="channels like 4ch"):
        parse_freq_interval("0ch")
    bins = freq_bins(np.arange(10.0), 1e6, Channels(4))
    np.testing.assert_array_equal(bins, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    ms, _ = sim_linear
    from casacore.tables import table

    with table(ms + "/SPECTRAL_WINDOW", ack=False) as t:
        width = float(abs(t.getcell("CHAN_WIDTH", 0)[0]))
    kw = dict(vis=ms, refant="C00", jones=["G", "G"], field="3C286", minblperant=0)
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    akcal(caltable=a, solint=["scan", "inf,2ch"], **kw)
    akcal(caltable=b, solint=["scan", "inf"], freqint=["full", f"{2 * width}Hz"], **kw)
    for x, y in zip(_table(a, "G1"), _table(b, "G1")):
        if x.spw != 0:
            continue
        assert x.jones.shape == y.jones.shape and x.jones.shape[1] > 1
        assert np.array_equal(x.flags, y.flags)
        np.testing.assert_array_equal(x.jones[~x.flags], y.jones[~y.flags])
        assert x.attrs["freqint_hz"] == pytest.approx(2 * width) and x.attrs["freq_interval"] == "2ch"
