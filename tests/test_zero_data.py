"""DATA exactly 0 in every correlation of a (row, channel) -- a correlator dropout left unflagged -- is
flagged by the solve whatever rfi_threshold is (core/cellflags.flag_bad_values): before, the zeros were
averaged into the solutions (a bandpass over a scan of zeros halved that antenna's amplitude)."""

import os
import sys

import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.core.cellflags import flag_bad_values
from alakazam.io import hdf5

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dead_antenna_ms import dead_antenna_ms  # noqa: E402  (tests/dead_antenna_ms.py)


def test_zero_samples_flagged_per_correlation():
    """DATA exactly 0: in every correlation of a (row, channel) all four flagged; in some correlations only
    (a feed's or a correlation's dropout; cross hands stored as zeros) those alone -- they were kept
    until session 55, and a reference antenna's Y feed at exactly 0 stayed the reference (review 55c)."""
    data = np.ones((3, 4, 4), np.complex64)
    data[0, 1] = 0                                  # every correlation 0: flagged
    data[1, 2, 1:3] = 0                             # cross hands 0 only: those flagged
    data[2, 0, 3] = 0j                              # one correlation 0
    data[2, 3, 0] = 1e-30                           # tiny, not zero: kept
    model = np.ones_like(data)
    weight = np.ones(data.shape, np.float32)
    flags, n_new = flag_bad_values(data, model, weight, np.zeros(data.shape, bool))
    assert flags[0, 1].all() and flags[1, 2, 1:3].all() and flags[2, 0, 3]
    assert n_new == 7 and flags.sum() == 7


@pytest.fixture(scope="module")
def zero_scan_ms(tmp_path_factory):
    return dead_antenna_ms(tmp_path_factory.mktemp("zeros"), ["C03"], n_chan=32, zeros=True, scans=[4])


@pytest.mark.parametrize("rfi_threshold", [None, 0.0])
def test_bandpass_over_a_scan_of_zeros_equals_the_flagged_solve(zero_scan_ms, tmp_path, rfi_threshold):
    ms, fl = zero_scan_ms
    kw = {} if rfi_threshold is None else {"rfi_threshold": rfi_threshold}
    out = {}
    for name, m in (("zeros", ms), ("flagged", fl)):
        cal = str(tmp_path / f"{name}.h5")
        akcal(vis=m, caltable=cal, field="3C286", refant="C00", parang=True, jones=["K", "G"],
              solint=["inf", "inf"], freqint=["full", "1MHz"], **kw)
        out[name] = hdf5.read_term(cal, "G0")[0]
    a, b = out["zeros"], out["flagged"]
    np.testing.assert_array_equal(a.flags, b.flags)
    ok = ~a.flags
    np.testing.assert_allclose(a.jones[ok], b.jones[ok], rtol=1e-6, atol=1e-9)
