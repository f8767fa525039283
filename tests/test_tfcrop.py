"""akflag mode='tfcrop' (alakazam/flagging/tfcrop.py): CASA flagdata's TFCrop.

Truth tests on a small simulated MS with injected RFI (tests/hazards.py: a persistent channel, two
intermittent channels, two broadband bursts; per-visibility SNR ~15): the RFI is found, clean samples
are flagged at TFCrop's own rate (measured with CASA 6.7 on the same MS: 1.72 % with the default
extendflags, which spreads each flag to the 4 correlations; 0.35 % without), all-zero (dead, unflagged)
data are left as CASA leaves them, FLAG is written only after a saved flag version, DATA and MODEL_DATA
never.  With a CASA install (/work/casavenv or $ALAKAZAM_CASA_PYTHON; skipped without), the flags are
compared with flagdata(mode='tfcrop') run on a copy of the same MS, one CASA process for every case
(also correlation selections, and the MS rewritten to its parallel hands).  A correlation list
('XX,YY') is flagged per selected correlation, which CASA's TFCrop does not do (it examines the list's
first product only): test_correlation_list_flags_each_selected_correlation_on_its_own pins akflag's
convention without CASA, the CASA comparison pins CASA's.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from casacore.tables import table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hazards import parallel_hands_only, rfi_dead_baseline_ms  # noqa: E402

from alakazam.errors import ParameterError  # noqa: E402
from casa_python import casa_python  # noqa: E402  (tests/casa_python.py)

CASA_PY = casa_python() or ""
needs_casa = pytest.mark.skipif(not os.access(CASA_PY, os.X_OK), reason=f"no CASA Python at {CASA_PY}")


@pytest.fixture(scope="module")
def rfi(tmp_path_factory):
    return rfi_dead_baseline_ms(str(tmp_path_factory.mktemp("tfcrop") / "rfi.ms"))


@pytest.fixture(scope="module")
def two(rfi, tmp_path_factory):
    """The same MS with only its parallel hands (XX, YY)."""
    return parallel_hands_only(rfi[0], str(tmp_path_factory.mktemp("tfcrop2") / "two.ms"))


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _cols(ms, *names):
    with table(ms, ack=False) as t:
        return [t.getcol(n) for n in names]


def test_finds_injected_rfi_spares_clean_data_and_writes_only_flag(rfi, tmp_path):
    from alakazam.caltasks import akflag

    src, mask, dead = rfi
    ms = _copy(src, str(tmp_path / "a.ms"))
    data0, model0 = _cols(ms, "DATA", "MODEL_DATA")
    out = akflag(vis=ms, mode="tfcrop")
    assert out["version"] == "akflag_1" and os.path.isdir(ms + ".flagversions")
    flag, data1, model1 = _cols(ms, "FLAG", "DATA", "MODEL_DATA")
    assert np.array_equal(data0, data1) and np.array_equal(model0, model1)
    clean = ~mask & ~dead[:, None, None]
    hit, false = flag[mask].mean(), flag[clean].mean()
    print(f"tfcrop: RFI samples flagged {hit:.4f}, clean samples flagged {false:.4f}")
    assert hit >= 0.99                       # (measured 1.0000, as CASA)
    assert false < 0.02                      # TFCrop's own rate (CASA on this MS: 1.72 %)
    assert not flag[dead].any()              # all-zero data: nothing to fit, left alone (as CASA)
    # the flag version holds the flags from before the run
    from alakazam.caltasks import akflagmanager

    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    assert not _cols(ms, "FLAG")[0].any()


def test_without_extension_clean_rate_below_one_percent(rfi, tmp_path):
    from alakazam.caltasks import akflag

    src, mask, dead = rfi
    ms = _copy(src, str(tmp_path / "b.ms"))
    out = akflag(vis=ms, mode="tfcrop", extendflags=False)
    flag, = _cols(ms, "FLAG")
    clean = ~mask & ~dead[:, None, None]
    assert flag[clean].mean() < 0.01         # (measured 0.35 %, as CASA)
    assert flag[mask].mean() >= 0.8          # each correlation alone (measured 0.865, as CASA)
    assert out["newly_flagged"] == int(flag.sum())


def test_calculate_writes_nothing(rfi, tmp_path):
    from alakazam.caltasks import akflag

    src, _, _ = rfi
    ms = _copy(src, str(tmp_path / "c.ms"))
    out = akflag(vis=ms, mode="tfcrop", action="calculate")
    assert out["newly_flagged"] > 0 and out["version"] is None
    assert not _cols(ms, "FLAG")[0].any() and not os.path.exists(ms + ".flagversions")


def test_bad_parameters_reported_together_before_anything_runs(rfi, tmp_path):
    from alakazam.caltasks import akflag

    src, _, _ = rfi
    ms = _copy(src, str(tmp_path / "d.ms"))
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="tfcrop", ntime="soon", maxnpieces=12, timefit="cubic", freqcutoff=-1.0,
               halfwin=5, flagdimension="both", usewindowstats="mean", antenna="C99")
    assert set(e.value.errors) >= {"ntime", "maxnpieces", "timefit", "freqcutoff", "halfwin",
                                   "flagdimension", "usewindowstats", "antenna"}
    assert "'soon'" in str(e.value) and "scan" in " ".join(e.value.errors["ntime"])
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="tfcrop", ntime=60.0, combinescans=True, timecutoff=0.0)
    assert set(e.value.errors) == {"combinescans", "timecutoff"}
    with pytest.raises(ParameterError, match="combinescans: True is not supported"):   # CASA combines
        akflag(vis=ms, mode="tfcrop", combinescans=True)         # scans with ntime='scan' too (measured)
    assert not os.path.exists(ms + ".flagversions") and not _cols(ms, "FLAG")[0].any()


def test_ntime_forms():
    from alakazam.flagging.tfcrop import ntime_seconds

    assert ntime_seconds("scan") == 0.0 and ntime_seconds(" SCAN ") == 0.0
    assert ntime_seconds(60) == ntime_seconds("60") == ntime_seconds("60s") == ntime_seconds("1min") == 60.0
    assert ntime_seconds("0.5h") == 1800.0
    for bad in (0, -5, "0s", "soon", "60 parsecs", True):
        with pytest.raises(ValueError):
            ntime_seconds(bad)


def test_ntime_chunks_start_at_the_first_integration_past_ntime():
    """CASA 6.7 (measured, test_matches_casa_flagdata[ntime200]): with 30 s integrations and ntime=200 s
    the chunks are 0-180, 210-390, 420-600, ... (not bins of 200 s from the scan start)."""
    from alakazam.flagging.tfcrop import _chunks

    t = np.arange(0.0, 900.0, 30.0)
    assert list(_chunks(t, 200.0)) == [0] * 7 + [1] * 7 + [2] * 7 + [3] * 7 + [4] * 2
    assert list(_chunks(t, 0.0)) == [0] * 30
    assert list(_chunks(t, 60.0)[:5]) == [0, 0, 1, 1, 2]


def test_yaml_flag_block_takes_the_same_keys(rfi):
    from alakazam.flagging.config import flag_config_from_dict

    src, _, _ = rfi
    cfg = flag_config_from_dict(dict(ms=src, mode="tfcrop", ntime="2min", timecutoff=3.5, freqfit="line",
                                     flagdimension="timefreq", extendflags=False))
    assert (cfg.ntime, cfg.timecutoff, cfg.freqfit, cfg.flagdimension, cfg.extendflags) == \
        ("2min", 3.5, "line", "timefreq", False)
    assert (cfg.freqcutoff, cfg.timefit, cfg.maxnpieces, cfg.usewindowstats, cfg.halfwin) == \
        (3.0, "line", 7, "none", 1)                                     # flagdata's defaults
    with pytest.raises(ParameterError) as e:
        flag_config_from_dict(dict(ms=src, mode="tfcrop", ntime=-1, maxnpieces=0))
    assert set(e.value.errors) == {"flag[0].ntime", "flag[0].maxnpieces"}


def test_extension_in_casas_order():
    """flagdata's extension (its agent, measured: an integration 63/64 flagged after extendpols, but
    below 80 % in every correlation before it, is not grown): growfreq / growtime from the per-
    correlation counts, '>=', then extendpols."""
    from alakazam.flagging.tfcrop import extend_chunk

    f = np.zeros((4, 10, 2), bool)
    f[0, :5, 0] = True
    f[0, 5:8, 1] = True                     # 80 % of integration 0 only across the two correlations
    g = extend_chunk(f)
    assert g[0, :8].all() and not g[0, 8:].any() and not g[1:].any()
    f[0, :8, 0] = True                      # 80 % in correlation 0: all channels, then all corrs
    assert extend_chunk(f)[0].all() and not extend_chunk(f)[1:].any()
    f = np.zeros((4, 10, 2), bool)
    f[:2, 3, 1] = True                      # 50 % of the integrations of channel 3
    g = extend_chunk(f)
    assert g[:, 3].all() and g.sum() == 8


def test_amplitude_rounds_as_casas_cabsf():
    """CASA's TFCrop reads |V| through its VisMapper: std::abs of the Complex, glibc's cabsf / hypotf,
    i.e. sqrt(re^2 + im^2) in double (the squares of floats are exact) rounded to float.  numpy's
    complex64 np.abs is 1 ulp away from that in ~20 % of samples (measured: 39936 of 200000), which
    was the whole of the per-correlation pre-flag differences (test below)."""
    from alakazam.flagging.tfcrop import amplitude

    rng = np.random.default_rng(7)
    d = (rng.standard_normal((50, 33, 4)) * 10.0 ** rng.uniform(-20, 20, (50, 33, 4))
         + 1j * rng.standard_normal((50, 33, 4))).astype(np.complex64)
    d[0, 0] = [complex(np.inf, np.nan), complex(np.nan, 1.0), complex(0.0, -np.inf), 0]
    view = d[:, ::2, :]                                         # not contiguous
    want = np.sqrt(view.real.astype(np.float64) ** 2 + view.imag.astype(np.float64) ** 2).astype(np.float32)
    want[0, 0, 0] = np.inf                                      # hypotf(inf, nan) = inf (C99)
    got = amplitude(view)
    assert got.dtype == np.float32 and got.shape == view.shape
    assert np.array_equal(got.view(np.int32), want.view(np.int32))


#: XX of one baseline of a simulated MS (10 integrations x 16 channels, complex64, base64), whose
#: channel 5 holds RFI at integrations 2 and 9, pre-flagged there in XX only (a clip)
_DEGENERATE_XX = (
    "lVijPLOIGL9ilQy7/ZIiv603Lb2t2Sm/lKCpvSifK79tn+W9mRgtv+ClJ75nfTS/X4E8vtkNOr92UGK+Scg6v1sdbb7/Aji/"
    "6xKKvjimMb/nOpS+o6IsvwXcfr5BFCa/sxCPvvzIH7/geoe+ZtEYv58teL5LEhu/8Lx3vg3mBL/nez09mVYUv7sgmzzeSiG/"
    "8Q8DvTFUJr8VHZK9C6Aqv8e6yr1WLTa/mJEAvotFOL8Mwiq+oSg3v8KsSL4+7jq/PVZIvhLnPb9PTmO+j/0yv2upgL6jfy+/"
    "td9rvjQrL7/d2HO+ixQfvwpwZr5e/Bq/Vch0vleqEb9oTma+26MLv8K7oT0zrRe/haRcPd5IH7/4sAq7LIwnv/E3CL3tiy6/"
    "bGe0vTKqNL+p8vlDra88vwevA74YYDi/SPIYvrtzPr8QWj++eXw9v8Y4T76uqTe/TwpevpthNb/jPlW+jPouv1CmXb7/jym/"
    "OjddvgycHr/E7Ty+Y7oev1xLP758Vg2/lpfAPdUZHL+G3F09Pt4jv6uy3zyLUyy//kwevDRNMr8IlTy9p000v4uGyL2xMD2/"
    "vWD7vbwyPb8J7u295nxEv44ONb60wkK/8k5JvpjmO79e0US+aLA1v+u5Ob4Tmi2/bR8wvj6mKr/Tiz++m2Mevx7pO77quxa/"
    "H+NAvvfuEb9hubg90C0TvwB61z1PCiO/YMWHPdMSJb9q8Zw8f7Axv9lPy7wg6zi/U4RsvbLePL8Lq7W9UjRCvwEJ773yhD6/"
    "chMKvgKEP79SfQy+F6o/vyIGG74DLz6/jv0qvm8qMb/soji+E9covy6dMr4KPCS/+SkYvlhFHb+VOCy+rW0XvzrBFz7SOxe/"
    "I5bGPYKbIL+OCpY9yu0pv0E2ED27ADC/uNURPPU0O79uQBm9UiA8v8SwkL33dD+/+ma2vSq6Rr+qDt+9Y6xEv6aF6b3NhkG/"
    "xYoOvkr7Pb9Zwwq+/scyv13vIb5ifSq/kRsevsmjJ7/6cR++b7cfv1YqCr61eRe/NBAqPszPFL951eo9vP4gv6DJyT1VRym/"
    "iRApPcHwL796N98878o6v7TqhLw2b0C/pBTivDreQ7/B2nK9eSZAv3mQ473tLD+/4jrBvZ7mQr+fBP294qU6v+2qB75w8zK/"
    "qqEIvinyLb+ysva9e5kivzBrC77Eoh2/Pmfbvag+GL9XqyA+wJkVv8h3FT7p2yC/cA3qPZDbKr9pyoo9LuIxvw3tOD0tIzy/"
    "Oin9Oi5VQr/2owW8lVtDv0JC37wBcEO/HGCvvQPqRb9Nv6C96LpCv9+Ky73eFDq/OA/lvRCRNb/i0AO+PHAuvzzz7L1K8iu/"
    "SfvsvT4yHb85nLK93UIWvySISj4pKhO/ZOkWPruZF78C5/M9HHQnv3/SzD3dWDa/BsCvPWsQOb+7qk49dms9v68BEbshmEK/"
    "l4T4vFEiRL+l3Ea9prxFv5t/XL19fUK/rLOfvc+PQL+iHbi9Ghszv5/uvb3lTS+/nRbQvfsjJ7/wDau9sWkdv/PMrb2DVhS/"
    "EdRIPgM7Dr/QzTA+5Zwev6J5Fz6SISS/SSf2PW/oML9C44s92Lo1v5IF+kPckEC//QS+PJtiRL/1Gqw8hLdGv1Xhwbya8UO/"
    "wWYdvexIR79mW5K9RexDv9G4fb3XSja/h2+mvX4VMr+nIYC9un8ovw1lgL0CwiW/GauRvTnqG78="
)


def test_one_ulp_of_amplitude_decides_a_degenerate_piece_like_casa():
    """CASA 6.7 flagdata(mode='tfcrop', extendflags=False) on this baseline (measured; gdb in its
    lineFit) flags channel 8 at every integration: the bandpass's 5th pass fits 7 pieces of 3 channels,
    and pieces 7-9 and 9-11 keep one unflagged channel each (8-10 were clipped in pass 4), so their
    'line' has S*Sxx - Sx*Sx = rounding noise.  With CASA's |V| (cabsf) the mean bandpass gives
    denominators 0.5 and 1.0 and a finite, wrong fit (0.125, 0, -0.125 over 7-9), and channel 8 is cut
    from each spectrum; with numpy's |V| (1-2 ulp off in 4 of the 16 channel means) both denominators
    were exactly 0, the fit NaN, and nothing was flagged."""
    import base64
    from types import SimpleNamespace

    from alakazam.flagging.tfcrop import flag_piece

    d = np.frombuffer(base64.b64decode("".join(_DEGENERATE_XX)), np.complex64).reshape(10, 16, 1)
    pre = np.zeros((10, 16, 1), bool)
    pre[[2, 9], 5, 0] = True
    times = np.arange(10) * 30.0
    piece = SimpleNamespace(data=d, flag=pre, full=None,
                            baseline_groups=lambda: ([(np.arange(10), np.arange(10))], times))
    cfg = SimpleNamespace(ntime="scan", flagdimension="freqtime", usewindowstats="none", extendflags=False,
                          timefit="line", freqfit="poly", maxnpieces=7, timecutoff=4.0, freqcutoff=3.0,
                          halfwin=1)
    new = flag_piece(piece, cfg, None) & ~pre
    assert new[:, 8, 0].all() and new.sum() == 10             # CASA's flags exactly


def test_correlation_list_flags_each_selected_correlation_on_its_own(rfi, tmp_path, caplog):
    """akflag's convention (alakazam/flagging/tfcrop.py's docstring): with a correlation selection every
    selected correlation is flagged on its own -- from its own |V| and its own incoming flags; nothing
    spreads to another correlation before the extension, and the unselected correlations' flags are
    neither read nor, with extendflags=False, changed.  So correlation='XX,YY' gives exactly the XX and
    YY flags of correlation='' (whose flags are CASA 6.7 flagdata's: test_matches_casa_flagdata),
    whatever the other correlations' incoming flags; with extendflags the extension then runs on the
    whole plane of the rows (every correlation and channel, as flagdata's).
    CASA's flagdata differs for a list and that is not copied: it runs one TFCrop agent whose fit and
    flags use the list's first product only, in CASA's order XX, YY, XY, YX, RR, LL, LR, RL, not the
    user's (casa_tfcrop_correlation; read in CASA's source, measured in test_matches_casa_flagdata's
    'corr_*' cases: CASA's flags are akflag's with correlation= that one correlation); akflag says so
    in its log."""
    from alakazam.caltasks import akflag
    from alakazam.flagging.tfcrop import casa_tfcrop_correlation

    types = ["XX", "XY", "YX", "YY"]
    assert [casa_tfcrop_correlation(c, types) for c in ("XX,YY", "YY,XX", "ABS_XX,YY", "XY,YY", "YX,XY",
                                                        "XY", "", "ABS_ALL")] == \
        ["XX", "XX", "XX", "YY", "XY", "XY", None, None]
    assert casa_tfcrop_correlation("LL,RR", ["RR", "RL", "LR", "LL"]) == "RR"

    src, _, _ = rfi
    plain = _copy(src, str(tmp_path / "plain.ms"))
    akflag(vis=plain, mode="tfcrop", extendflags=False)
    f_all, = _cols(plain, "FLAG")
    # incoming flags on XY, YX (unselected) and YY (selected): random samples and a block
    pre = _copy(src, str(tmp_path / "pre.ms"))
    rng = np.random.default_rng(3)
    with table(pre, readonly=False, ack=False) as t:
        f0 = t.getcol("FLAG")
        f0[..., 1:] |= rng.random(f0[..., 1:].shape) < 0.1
        f0[:600, 10:30, 1:] = True
        t.putcol("FLAG", f0)
    a, b, c, d = (_copy(pre, str(tmp_path / f"{x}.ms")) for x in "abcd")
    akflag(vis=a, mode="tfcrop", extendflags=False)
    with caplog.at_level("INFO", logger="alakazam.flag"):
        akflag(vis=b, mode="tfcrop", correlation="XX,YY", extendflags=False)
    fa, = _cols(a, "FLAG")
    fb, = _cols(b, "FLAG")
    assert np.array_equal(fa[..., 0], f_all[..., 0])        # XX: the other correlations' flags not read
    assert np.array_equal(fb[..., [0, 3]], fa[..., [0, 3]])  # each selected correlation as with all
    assert np.array_equal(fb[..., 1:3], f0[..., 1:3])        # the unselected ones untouched
    assert (fb[..., 3] & ~f0[..., 3]).sum() > 0 and (fb[..., 0] & ~f0[..., 0]).sum() > 0
    assert any("CASA flagdata's TFCrop would examine and flag XX only" in r.getMessage()
               for r in caplog.records)
    # extendflags: the same flags, then flagdata's extension over every correlation and channel
    akflag(vis=c, mode="tfcrop", correlation="XX,YY")
    akflag(vis=d, mode="tfcrop", correlation="XX,YY", extendflags=False)
    akflag(vis=d, mode="extend", extendpols=True, growtime=50.0, growfreq=80.0)
    fc, = _cols(c, "FLAG")
    fd, = _cols(d, "FLAG")
    assert np.array_equal(fc, fd) and (fc[..., 1:3] & ~f0[..., 1:3]).sum() > 0


def test_expression_prefix_decides_the_value_examined(rfi, tmp_path):
    """correlation='REAL_XY' / 'IMAG_XY' / 'ABS_XY' (flagging/mapper.py, CASA's VisMapper): TFCrop examines
    that value of XY.  XY is rewritten to 1 + 1j plus noise with a spike of +10 in the real part of one
    channel: REAL_ and ABS_ flag that channel, IMAG_ does not (it examined |V| for every prefix until
    session 55)."""
    from alakazam.caltasks import akflag

    src, _, _ = rfi
    base = _copy(src, str(tmp_path / "base.ms"))
    rng = np.random.default_rng(5)
    with table(base, readonly=False, ack=False) as t:
        d = t.getcol("DATA")
        n = d[..., 1].shape
        xy = (1 + 0.05 * rng.standard_normal(n)) + 1j * (1 + 0.05 * rng.standard_normal(n))
        xy[:, 20] += 10.0
        d[..., 1] = xy
        t.putcol("DATA", d)
        f0 = t.getcol("FLAG")
    got = {}
    for expr in ("REAL", "IMAG", "ABS"):
        ms = _copy(base, str(tmp_path / f"{expr}.ms"))
        akflag(vis=ms, mode="tfcrop", correlation=f"{expr}_XY", extendflags=False)
        f, = _cols(ms, "FLAG")
        got[expr] = f[..., 1] & ~f0[..., 1]
    live = ~f0[:, 20, 1]
    assert got["REAL"][live, 20].mean() > 0.9 and got["ABS"][live, 20].mean() > 0.9
    assert got["IMAG"][live, 20].mean() < 0.1


CASES = {
    "default": {},
    "timefreq": {"flagdimension": "timefreq"},
    "time": {"flagdimension": "time"},
    "fits": {"freqfit": "line", "timefit": "poly", "maxnpieces": 4},
    "window": {"usewindowstats": "both", "halfwin": 2},
    "cutoffs": {"timecutoff": 3.0, "freqcutoff": 2.5, "extendflags": False},
    "ntime": {"ntime": 300.0},
    "ntime200": {"ntime": "200s"},          # chunks start at the first integration >= 200 s on
    # correlation selections: for a list CASA's TFCrop examines and flags one correlation only
    # (casa_tfcrop_correlation), so akflag is compared with correlation= that one, and its own flags of
    # the list must hold CASA's
    "corr_xxyy": {"correlation": "XX,YY", "extendflags": False},
    "corr_xxyy_ext": {"correlation": "XX,YY"},
    "corr_yyxx": {"correlation": "YY,XX", "extendflags": False},
    "corr_xyyy_ext": {"correlation": "XY,YY"},
    "corr_absxxyy": {"correlation": "ABS_XX,YY", "extendflags": False},
    "corr_xy": {"correlation": "XY", "extendflags": False},
    "corr_xy_ext": {"correlation": "XY"},
    "corr_absxx": {"correlation": "ABS_XX", "extendflags": False},
    "corr_absall": {"correlation": "ABS_ALL", "extendflags": False},
    # the value examined (flagging/mapper.py): CASA's TFCrop reads the expression's real part, phase, ...
    "corr_realxy": {"correlation": "REAL_XY", "extendflags": False},
    "corr_imagxx_ext": {"correlation": "IMAG_XX"},
    "corr_argyy": {"correlation": "ARG_YY", "extendflags": False},
    "corr_normxy": {"correlation": "NORM_XY", "extendflags": False},
}
#: on the MS rewritten to its parallel hands (XX, YY)
CASES_TWO = {
    "two_default": {},
    "two_noext": {"extendflags": False},
    "two_xxyy": {"correlation": "XX,YY", "extendflags": False},
    "two_xxyy_ext": {"correlation": "XX,YY"},
    "two_yy": {"correlation": "YY", "extendflags": False},
}

_CASA_SCRIPT = """
import json, sys
from casatasks import flagdata
for ms, kw in json.loads(sys.argv[1]):
    flagdata(vis=ms, mode='tfcrop', flagbackup=False, **kw)
"""


@needs_casa
def test_matches_casa_flagdata(rfi, two, tmp_path):
    """CASA 6.7 flagdata(mode='tfcrop') and akflag on copies of the same MS, per case: the fraction of
    CASA's new flags akflag also has and of akflag's CASA also has (measured: identical flags in every
    case, 'ntime' included -- its 4 samples at 1.000002 x the cutoff, once different, no longer are).
    For a correlation list CASA's flags are akflag's with correlation = the one correlation CASA's
    TFCrop examines (casa_tfcrop_correlation;
    measured identical, e.g. 'XX,YY' without extension: CASA 2292 flags, all XX, = akflag's XX; akflag's
    own 4712 = those + YY's 2420), and akflag's flags of the list hold CASA's.  An expression prefix
    (REAL_, IMAG_, ARG_, NORM_) is examined as CASA's (session 55: identical for ARG_, 2-7 samples of
    7,000-25,000 differ for REAL_ / IMAG_ / NORM_ where a baseline's part averages near zero and the
    fits divide by it; every prefix examined |V| before, e.g. REAL_XY 2x fewer flags than CASA's)."""
    from alakazam.caltasks import akflag
    from alakazam.flagging import mapper
    from alakazam.flagging.tfcrop import casa_tfcrop_correlation

    src, _, _ = rfi
    runs = [(name, src, ["XX", "XY", "YX", "YY"], kw) for name, kw in CASES.items()] + \
        [(name, two, ["XX", "YY"], kw) for name, kw in CASES_TWO.items()]
    jobs = [(_copy(ms, str(tmp_path / f"casa_{name}.ms")), kw) for name, ms, _, kw in runs]
    subprocess.run([CASA_PY, "-c", _CASA_SCRIPT, json.dumps(jobs)], check=True, capture_output=True,
                   cwd=str(tmp_path), timeout=300)
    for name, ms0, types, kw in runs:
        fc, = _cols(str(tmp_path / f"casa_{name}.ms"), "FLAG")
        first = casa_tfcrop_correlation(kw.get("correlation", ""), types)
        if first and mapper.expression(kw["correlation"]) != "ABS":     # 'REAL_XY': the real part of XY
            first = f"{mapper.expression(kw['correlation'])}_{first}"
        ms = _copy(ms0, str(tmp_path / f"ak_{name}.ms"))
        akflag(vis=ms, mode="tfcrop", **(dict(kw, correlation=first) if first else kw))
        fa, = _cols(ms, "FLAG")
        both = (fa & fc).sum()
        in_ak, in_casa = both / max(fc.sum(), 1), both / max(fa.sum(), 1)
        extra = ""
        if first and len(kw["correlation"].split(",")) > 1:       # akflag's own flags of the list
            own = _copy(ms0, str(tmp_path / f"own_{name}.ms"))
            akflag(vis=own, mode="tfcrop", **kw)
            fo, = _cols(own, "FLAG")
            extra = f"; akflag with {kw['correlation']!r} {fo.sum()}"
            assert (fo & fc).sum() / max(fc.sum(), 1) >= 0.99 and fo.sum() > fc.sum(), name
        print(f"{name}: CASA {fc.sum()} akflag{f' (correlation={first!r})' if first else ''} {fa.sum()} -> "
              f"CASA's in ours {in_ak:.4f}, ours in CASA's {in_casa:.4f}{extra}")
        assert fc.sum() > 0
        assert in_ak >= 0.99 and in_casa >= 0.99, name
