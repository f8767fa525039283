"""akflag mode='rflag' (alakazam/flagging/rflag.py): CASA flagdata's RFlag.

Truth tests (no CASA needed): on a simulated MS with injected RFI (tests/hazards.py: a persistent
channel, two intermittent channels, two broadband bursts; noise 1 Jy per visibility) the RFI is found;
on pure complex Gaussian noise the flag rate is the spectral analysis' own (|Re| or |Im| beyond
freqdevscale x mean |deviation| = 5 x 0.798 sigma = 3.99 sigma: 2 x 6.6e-5 = 1.3e-4 per sample; the
time analysis' threshold, 5 x the mean 3-point rms, is never reached: measured 0; CASA 6.7 on the same
MS: 137 of 860160 = 1.6e-4, and 4 x that with extendflags' extendpols -- identical flags); the flags
do not depend on how many baselines are read at once (the automatic thresholds span the whole chunk);
every bad parameter is reported together before anything runs.  With a CASA install
(/work/casavenv or $ALAKAZAM_CASA_PYTHON; skipped without), the flags are compared sample by sample
with flagdata(mode='rflag') run on copies of the same MSs, one CASA process for every case.
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
from casa_python import casa_python  # noqa: E402  (tests/casa_python.py)
from hazards import rfi_dead_baseline_ms, rfi_ms  # noqa: E402

from alakazam.errors import ParameterError  # noqa: E402

CASA_PY = casa_python() or ""
needs_casa = pytest.mark.skipif(not os.access(CASA_PY, os.X_OK), reason=f"no CASA Python at {CASA_PY}")


@pytest.fixture(scope="module")
def rfi(tmp_path_factory):
    return rfi_dead_baseline_ms(str(tmp_path_factory.mktemp("rflag") / "rfi.ms"))


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """Two SPWs (32 and 48 channels), 7 antennas, flags already set (3 % of the samples, a channel
    everywhere, one correlation of 2 % of the rows, FLAG_ROW where a row is all flagged) and all scans
    renumbered 1: one scan of three fields (flagdata's chunks are per field)."""
    d = tmp_path_factory.mktemp("rflag_busy")
    ms = str(d / "busy.ms")
    rfi_ms(ms, persistent=(5,), intermittent=(20,), bursts=3, n_ant=7, n_chan=(32, 48), noise=1.0, seed=11)
    rng = np.random.default_rng(3)
    with table(ms, readonly=False, ack=False) as t:
        for dd in (0, 1):
            q = t.query(f"DATA_DESC_ID=={dd}")
            f = q.getcol("FLAG")
            f |= rng.random(f.shape) < 0.03
            f[:, 7, :] = True
            f[rng.random(f.shape[0]) < 0.02, :, 1] = True
            q.putcol("FLAG", f)
            q.putcol("FLAG_ROW", f.all(axis=(1, 2)))
            q.close()
        t.putcol("SCAN_NUMBER", np.ones(t.nrows(), np.int32))
    return ms


@pytest.fixture(scope="module")
def autos(rfi, tmp_path_factory):
    """The RFI MS plus an auto-correlation row per antenna and time (parallel hands ~50 + 0.5 noise,
    real; cross hands complex noise; a spike every 37th row in channel 10)."""
    path = str(tmp_path_factory.mktemp("rflag_autos") / "autos.ms")
    shutil.copytree(rfi[0], path)
    rng = np.random.default_rng(5)
    with table(path, readonly=False, ack=False) as t:
        n = t.nrows()
        tm = t.getcol("TIME")
        n_ant = len(set(t.getcol("ANTENNA1")) | set(t.getcol("ANTENNA2")))
        src = np.repeat([np.flatnonzero(tm == ut)[0] for ut in np.unique(tm)], n_ant)
        t.addrows(len(src))
        for c in t.colnames():
            if c != "FLAG_CATEGORY":
                t.putcol(c, t.getcol(c, 0, n)[src], n, len(src))
        ants = np.tile(np.arange(n_ant, dtype=np.int32), len(src) // n_ant)
        t.putcol("ANTENNA1", ants, n, len(src))
        t.putcol("ANTENNA2", ants, n, len(src))
        t.putcol("UVW", np.zeros((len(src), 3)), n, len(src))
        shape = (len(src),) + t.getcell("DATA", 0).shape
        auto = (50.0 + 0.5 * rng.normal(size=shape)).astype(np.complex64)
        auto[:, :, 1:3] = rng.normal(size=shape[:2] + (2,)) + 1j * rng.normal(size=shape[:2] + (2,))
        auto[::37, 10, 0] += 30.0
        t.putcol("DATA", auto, n, len(src))
    return path


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    """8 antennas, 64 channels, 1 h of 30 s: DATA = complex Gaussian noise (sigma 1 per part)."""
    from alakazam.sim import simulate_ms

    ms = str(tmp_path_factory.mktemp("rflag_noise") / "noise.ms")
    simulate_ms(ms, n_ant=8, n_ant_extra=0, n_chan=(64,), duration_h=1.0, int_s=30.0, scan_len_s=900.0,
                noise=0.05, seed=3, leakage=False, dead_ant=False, flag_rows=0.0, rfi=False)
    rng = np.random.default_rng(9)
    with table(ms, readonly=False, ack=False) as t:
        d = t.getcol("DATA")
        t.putcol("DATA", (rng.normal(size=d.shape) + 1j * rng.normal(size=d.shape)).astype(np.complex64))
    return ms


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _flags(ms):
    """FLAG of every row, flattened per DATA_DESC_ID (SPWs of different widths)."""
    with table(ms, ack=False) as t:
        dd = t.getcol("DATA_DESC_ID")
        out = []
        for x in np.unique(dd):
            q = t.query(f"DATA_DESC_ID=={x}")
            out.append(q.getcol("FLAG").ravel())
            q.close()
        return np.concatenate(out)


def _cols(ms, *names):
    with table(ms, ack=False) as t:
        return [t.getcol(n) for n in names]


def test_finds_injected_rfi_and_writes_only_flag(rfi, tmp_path):
    from alakazam.caltasks import akflag, akflagmanager

    src, mask, dead = rfi
    ms = _copy(src, str(tmp_path / "a.ms"))
    data0, model0 = _cols(ms, "DATA", "MODEL_DATA")
    out = akflag(vis=ms, mode="rflag")
    assert out["version"] == "akflag_1"
    flag, data1, model1 = _cols(ms, "FLAG", "DATA", "MODEL_DATA")
    assert np.array_equal(data0, data1) and np.array_equal(model0, model1)
    hit = flag[mask].mean()
    print(f"rflag: RFI samples flagged {hit:.4f}, others {flag[~mask].mean():.4f}")
    assert hit >= 0.99                       # (measured 0.9961, as CASA)
    assert not flag[dead].any()              # all-zero data: rms 0 and no deviation (as CASA)
    assert out["newly_flagged"] == int(flag.sum())
    akflagmanager(vis=ms, mode="restore", versionname="akflag_1")
    assert not _cols(ms, "FLAG")[0].any()


def test_the_two_analyses_add_up(rfi, tmp_path):
    """The time analysis alone (freqdev huge) and the spectral analysis alone (timedev huge) each set a
    part of the flags; both run from the incoming flags with thresholds of their own, so together they
    flag exactly the union.  The persistent RFI channel (5) stands out of every spectrum: the spectral
    analysis takes it whole (measured: the other RFI samples, 70 % by each analysis alone, 92 % by
    both)."""
    from alakazam.caltasks import akflag

    src, mask, dead = rfi
    runs = {}
    for name, kw in (("time", {"freqdev": 1e9}), ("freq", {"timedev": 1e9}), ("both", {})):
        ms = _copy(src, str(tmp_path / f"{name}.ms"))
        akflag(vis=ms, mode="rflag", extendflags=False, **kw)
        runs[name], = _cols(ms, "FLAG")
    ft, ff, fb = runs["time"], runs["freq"], runs["both"]
    print(f"time alone {ft.sum()}, spectral alone {ff.sum()}, both {fb.sum()}; channel 5 (persistent): "
          f"time {ft[~dead, 5].mean():.3f} spectral {ff[~dead, 5].mean():.3f}; other RFI: time "
          f"{ft[:, 6:][mask[:, 6:]].mean():.3f} spectral {ff[:, 6:][mask[:, 6:]].mean():.3f}")
    assert np.array_equal(fb, ft | ff)
    assert (ft & ~ff).any() and (ff & ~ft).any()
    assert ff[~dead, 5].mean() > 0.99                  # (the dead baseline's zeros carry no RFI)


def test_clean_gaussian_noise_rate(noise, tmp_path):
    """Pure noise: 1.3e-4 per sample expected from the spectral analysis alone (module docstring),
    none from the time analysis; extendflags' extendpols spreads each to the 4 correlations."""
    from alakazam.caltasks import akflag

    n_ms = _copy(noise, str(tmp_path / "n.ms"))
    e_ms = _copy(noise, str(tmp_path / "e.ms"))
    t_ms = _copy(noise, str(tmp_path / "t.ms"))
    akflag(vis=n_ms, mode="rflag", extendflags=False)
    akflag(vis=e_ms, mode="rflag")
    akflag(vis=t_ms, mode="rflag", freqdev=1e9)          # the time analysis alone
    fn, = _cols(n_ms, "FLAG")
    fe, = _cols(e_ms, "FLAG")
    ft, = _cols(t_ms, "FLAG")
    print(f"rflag on noise: {fn.mean():.2e} (extendflags=False), {fe.mean():.2e} (default), time only "
          f"{ft.mean():.2e}")
    assert 0.6e-4 < fn.mean() < 2.6e-4       # (measured 1.59e-4 = 137 of 860160, as CASA)
    assert fe.sum() == 4 * fn.sum()          # (548, as CASA)
    assert not ft.any()


def test_a_spike_in_noise_is_flagged_alone(noise, tmp_path):
    from alakazam.caltasks import akflag

    ms = _copy(noise, str(tmp_path / "s.ms"))
    with table(ms, readonly=False, ack=False) as t:
        d = t.getcol("DATA")
        d[500, 30, 0] += 12.0 - 9.0j
        t.putcol("DATA", d)
    akflag(vis=ms, mode="rflag", extendflags=False)
    f, = _cols(ms, "FLAG")
    assert f[500, 30, 0]
    # the time analysis flags the spike's 3-integration window of its baseline and channel
    with table(ms, ack=False) as t:
        a1, a2, tm = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("TIME")
    same = np.flatnonzero((a1 == a1[500]) & (a2 == a2[500]))
    same = same[np.argsort(tm[same])]
    i = int(np.flatnonzero(same == 500)[0])
    assert f[same[i - 1:i + 2], 30, 0].all()


def test_spectralmin_flags_every_spectrum_as_casa(rfi, tmp_path):
    """CASA 6.7's spectrum 'spread' is 0 (module docstring; measured: spectralmin=0.01 flags all 307200
    samples of this MS): any spectralmin > 0 flags every spectrum, spectralmax >= 0 none."""
    from alakazam.caltasks import akflag

    src, _, _ = rfi
    ms = _copy(src, str(tmp_path / "m.ms"))
    akflag(vis=ms, mode="rflag", spectralmin=1e-9, extendflags=False)
    assert _cols(ms, "FLAG")[0].all()
    a = _copy(src, str(tmp_path / "a.ms"))
    b = _copy(src, str(tmp_path / "b.ms"))
    akflag(vis=a, mode="rflag", spectralmax=0.0, extendflags=False)
    akflag(vis=b, mode="rflag", extendflags=False)
    assert np.array_equal(_cols(a, "FLAG")[0], _cols(b, "FLAG")[0])


def test_pieces_give_the_flags_of_the_whole(busy, tmp_path, monkeypatch):
    """A unit read in many pieces (memory_limit_gb tiny): a first pass over all of them gives the
    chunk's thresholds, so the flags are those of one piece."""
    from alakazam.caltasks import akflag
    from alakazam.flagging import rflag

    calls = []
    real = rflag.prepare_unit
    monkeypatch.setattr(rflag, "prepare_unit", lambda *a: calls.append(1) or real(*a))
    one = _copy(busy, str(tmp_path / "one.ms"))
    many = _copy(busy, str(tmp_path / "many.ms"))
    akflag(vis=one, mode="rflag", ntime=300)
    assert not calls
    akflag(vis=many, mode="rflag", ntime=300, memory_limit_gb=2e-4)
    assert len(calls) >= 2
    f1, fm = _flags(one), _flags(many)
    assert f1.sum() > 0 and np.array_equal(f1, fm)


def test_kernels_follow_casas_arithmetic():
    from alakazam.flagging.rflag import _median_spread, _threshold

    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 8, 64):
        x = rng.normal(size=n).astype(np.float32).astype(np.float64)    # (visibilities are float32)
        m, spread = _median_spread(x.copy())
        assert m == np.median(x) and spread == 0.0                     # (CASA's 'spread': 0)
    s = np.array([3.0, 0.0, 8.0, 2.0, 10.0])
    c = np.array([1.0, 0.0, 2.0, 1.0, 2.0])            # means 3, 0 (no sample), 4, 2, 5
    med = 3.0
    mad = np.median(np.abs(np.array([3.0, 0.0, 4.0, 2.0, 5.0]) - med))
    assert _threshold(s, c) == med + 1.4826 * mad


def test_bad_parameters_reported_together_before_anything_runs(rfi, tmp_path):
    from alakazam.caltasks import akflag

    src, _, _ = rfi
    ms = _copy(src, str(tmp_path / "d.ms"))
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="rflag", timedev="tdev.txt", freqdev=[[0, 0]], timedevscale=0.0,
               freqdevscale=-2.0, winsize=0, display="both", ntime="soon", antenna="C99")
    assert set(e.value.errors) >= {"timedev", "freqdev", "timedevscale", "freqdevscale", "winsize",
                                   "display", "ntime", "antenna"}
    assert "file" in " ".join(e.value.errors["timedev"])
    assert "[field, spw, dev]" in " ".join(e.value.errors["freqdev"])
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="rflag", action="calculate", combinescans=True, timedev=-1.0)
    assert set(e.value.errors) == {"action", "combinescans", "timedev"}
    assert "threshold" in " ".join(e.value.errors["action"])
    assert not os.path.exists(ms + ".flagversions") and not _cols(ms, "FLAG")[0].any()


def test_dev_rows_the_ms_lacks_are_named(rfi, tmp_path, caplog):
    """[[field, spw, dev]] rows naming a FIELD_ID / SPW the MS lacks: used for nothing, as flagdata
    (its scripts run on split MSs), and said in a warning."""
    import logging

    from alakazam.caltasks import akflag

    src, _, _ = rfi
    ms = _copy(src, str(tmp_path / "w.ms"))
    with caplog.at_level(logging.WARNING, logger="alakazam.flag"):
        akflag(vis=ms, mode="rflag", timedev=[[0, 5, 0.1]], freqdev=[[7, 0, 0.1], [0, 0, 0.2]])
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "timedev: rows [[0, 5, 0.1]] name no FIELD_ID" in msgs and "freqdev: rows [[7, 0, 0.1]]" in msgs


def test_dev_forms():
    """timedev / freqdev: flagdata's forms, also as the strings the command line gives."""
    from alakazam.flagging.rflag import parse_dev

    assert parse_dev([], "timedev") == parse_dev("", "timedev") == (0.0, {})
    assert parse_dev(0.5, "timedev") == parse_dev("0.5", "timedev") == (0.5, {})
    assert parse_dev([[0, 1, 0.2], [2, 0, 0.4]], "freqdev") == (0.0, {(0, 1): 0.2, (2, 0): 0.4})
    assert parse_dev("[[0, 1, 0.2]]", "freqdev") == parse_dev([0, 1, 0.2], "freqdev") == (0.0, {(0, 1): 0.2})
    for bad in ("tdev.txt", 0, -1.0, True, [[0, 0, 0.0]], [[0.5, 0, 1.0]], [[0, 0]], [[0, -1, 1.0]],
                float("inf")):
        with pytest.raises(ValueError):
            parse_dev(bad, "timedev")


def test_yaml_flag_block_takes_the_same_keys(rfi):
    from alakazam.flagging.config import flag_config_from_dict

    src, _, _ = rfi
    cfg = flag_config_from_dict(dict(ms=src, mode="rflag", ntime="5min", winsize=5, timedev=0.3,
                                     freqdev=[[0, 0, 0.2], [1, 0, 0.4]], extendflags=False))
    assert (cfg.ntime, cfg.winsize, cfg.timedev, cfg.freqdev, cfg.extendflags) == \
        ("5min", 5, 0.3, [[0, 0, 0.2], [1, 0, 0.4]], False)
    assert (cfg.timedevscale, cfg.freqdevscale, cfg.spectralmax, cfg.spectralmin, cfg.combinescans) == \
        (5.0, 5.0, 1e6, 0.0, False)                                     # flagdata's defaults
    assert cfg.timedev != [] and flag_config_from_dict(dict(ms=src, mode="rflag")).timedev == []
    with pytest.raises(ParameterError) as e:
        flag_config_from_dict(dict(ms=src, mode="rflag", winsize=0, freqdev="x"))
    assert set(e.value.errors) == {"flag[0].winsize", "flag[0].freqdev"}


# flagdata's parameters per case; akflag's are the same except where "ak" is given
CASES = {
    "default": {},
    "noext": {"extendflags": False},
    "scales": {"timedevscale": 3.0, "freqdevscale": 4.0, "extendflags": False},
    "winsize5": {"winsize": 5},
    "winsize4_ntime300": {"winsize": 4, "ntime": 300.0, "extendflags": False},
    "ntime200": {"ntime": "200s"},
    "ntime60": {"ntime": 60.0, "extendflags": False},      # chunks of 2 integrations (< winsize)
    "devs": {"timedev": 2.0, "freqdev": 2.5, "timedevscale": 1.5, "freqdevscale": 1.2},
    "matrix": {"timedev": [[0, 0, 0.3], [1, 1, 0.4]], "freqdev": [[1, 0, 0.3]], "extendflags": False},
    "spectralmin": {"spectralmin": 0.01, "extendflags": False},
    "corr": {"correlation": "XX,YY", "extendflags": False},
    "abs_all": {"correlation": "ABS_ALL"},
    "chans": {"spw": "0:3~20", "extendflags": False},
    "residual": {"datacolumn": "residual_data", "extendflags": False,
                 "ak": {"datacolumn": "residual_data", "extendflags": False}},
}
#: the busy MS (2 SPWs, flags set, one scan of three fields); no all-zero baseline there
BUSY_CASES = {k: v for k, v in CASES.items() if k in ("default", "noext", "winsize4_ntime300", "matrix",
                                                      "corr")}
BUSY_CASES["select"] = {"antenna": "!C02", "spw": "1", "uvrange": ">1000m"}
BUSY_CASES["chans2"] = {"spw": "0:3~20,1:10~40", "extendflags": False}
#: the RFI MS with auto-correlations (flagdata's rflag takes them as any baseline, in the thresholds too)
AUTO_CASES = {k: CASES[k] for k in ("default", "noext")}

_CASA_SCRIPT = """
import json, sys
from casatasks import flagdata
for ms, kw in json.loads(sys.argv[1]):
    flagdata(vis=ms, mode='rflag', flagbackup=False, **kw)
"""


def _casa_kw(kw):
    return {k: v for k, v in kw.items() if k != "ak"}


@needs_casa
def test_matches_casa_flagdata(rfi, busy, autos, tmp_path):
    """CASA 6.7 flagdata(mode='rflag') and akflag on copies of the same MSs, per case: the fraction of
    CASA's flags akflag also has and of akflag's CASA also has (measured: identical flags, 1.0 / 1.0,
    in every case of the three MSs)."""
    from alakazam.caltasks import akflag

    src, _, _ = rfi
    jobs, runs = [], []
    for tag, ms0, cases in (("rfi", src, CASES), ("busy", busy, BUSY_CASES), ("autos", autos, AUTO_CASES)):
        for name, kw in cases.items():
            casa_ms = _copy(ms0, str(tmp_path / f"casa_{tag}_{name}.ms"))
            jobs.append((casa_ms, _casa_kw(kw)))
            runs.append((f"{tag}/{name}", ms0, casa_ms, kw.get("ak", kw)))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([CASA_PY, "-c", _CASA_SCRIPT, json.dumps(jobs)], capture_output=True, text=True,
                       cwd=str(tmp_path), timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    for i, (name, ms0, casa_ms, kw) in enumerate(runs):
        ms = _copy(ms0, str(tmp_path / f"ak_{i}.ms"))
        akflag(vis=ms, mode="rflag", **kw)
        fa, fc, f0 = _flags(ms), _flags(casa_ms), _flags(ms0)
        both = (fa & fc).sum()
        in_ak, in_casa = both / max(fc.sum(), 1), both / max(fa.sum(), 1)
        print(f"{name}: CASA {fc.sum()} akflag {fa.sum()} (before {f0.sum()}) -> CASA's in ours {in_ak:.5f}, "
              f"ours in CASA's {in_casa:.5f}")
        assert fc.sum() > f0.sum(), name
        assert in_ak == 1.0 and in_casa == 1.0, name
