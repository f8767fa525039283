"""Hostile review of akflag mode='rflag' (and tfcrop, which shares the extension and the units).

Two differences from CASA 6.7's flagdata, measured on MSs the rflag work did not try:

1. extendflags=True with a correlation or channel selection: flagdata extends the new flags over ALL
   correlations and ALL channels of the selected rows (extendpols, growtime 50 %, growfreq 80 % on the
   whole plane), akflag only over the selected correlations / channels.  flagdata's result is exactly
   akflag's rflag with extendflags=False followed by mode='extend' (extendpols, growtime=50,
   growfreq=80) with the correlation / channel part of the selection left out (measured: identical
   flags; correlation='XX,YY' on a 6-antenna, 3-SPW MS: CASA 139008 flags, akflag 82046).
2. Scan numbers repeated in another OBSERVATION_ID (a concatenation of two observations): flagdata
   chunks per observation (its flags are those of the same MS with distinct scan numbers), akflag
   puts both observations' scan N into one (DATA_DESC_ID, scan) unit (flagging/select.units): the
   automatic thresholds, the time windows and the extension span the two epochs (measured: CASA
   145276 flags, akflag 151176, 22032 not in CASA's, 16132 of CASA's missing; tfcrop 81696 vs 109028).

3. datacolumn='corrected' without CORRECTED_DATA: not a ParameterError for rflag / tfcrop (clip, aoflagger
   and mad check it), a flag version and an 'in_progress' marker were left.

The tests pin flagdata's behaviour through those equivalences, so they need no CASA (the last test
checks the equivalences against CASA 6.7 when it is there).  All fail on c4680c6 (run them outside the
worktree with PYTHONPATH=/work/main); the branch's fixes (flagging/select.py, engine.py, rflag.py,
tfcrop.py) make them pass.
"""

import os
import shutil
import sys

import numpy as np
import pytest
from casacore.tables import table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hazards import rfi_ms  # noqa: E402


def _flags(ms):
    with table(ms, ack=False) as t:
        key = np.stack([t.getcol(c) for c in ("TIME", "ANTENNA1", "ANTENNA2", "DATA_DESC_ID")])
        order = np.lexsort(key[::-1])
        return np.concatenate([t.getcell("FLAG", int(i)).ravel() for i in order])


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    ms = str(tmp_path_factory.mktemp("review_rflag") / "src.ms")
    rfi_ms(ms, persistent=(5,), intermittent=(20,), bursts=2, noise=1.0, n_chan=(32,))
    rng = np.random.default_rng(4)
    with table(ms, readonly=False, ack=False) as t:          # some flags already set
        f = t.getcol("FLAG")
        f |= rng.random(f.shape) < 0.03
        t.putcol("FLAG", f)
    return ms


def _copy(ms, dst):
    shutil.copytree(ms, dst)
    return dst


@pytest.mark.parametrize("mode", ["rflag"])       # (tfcrop: the same extension, but its own flags
@pytest.mark.parametrize("sel", [{"correlation": "XX,YY"}, {"spw": "0:4~27"}])   # differ there too)
def test_extendflags_covers_the_whole_plane_as_flagdata(src, tmp_path, mode, sel):
    from alakazam.caltasks import akflag

    a = _copy(src, str(tmp_path / "a.ms"))
    b = _copy(src, str(tmp_path / "b.ms"))
    akflag(vis=a, mode=mode, **sel)                                   # extendflags=True (default)
    akflag(vis=b, mode=mode, extendflags=False, **sel)                # flagdata: then the extension ...
    akflag(vis=b, mode="extend", extendpols=True, growtime=50.0, growfreq=80.0,
           **({"spw": "0"} if "spw" in sel else {}))                  # ... on every corr. and channel
    fa, fb = _flags(a), _flags(b)
    print(f"{mode} {sel}: akflag {fa.sum()}, flagdata's extension {fb.sum()}")
    assert np.array_equal(fa, fb)


def _renumber_second_half(ms):
    """Scans >= 4 become scans 1.. of OBSERVATION_ID 1 (as a concatenation of two observations)."""
    with table(ms + "/OBSERVATION", readonly=False, ack=False) as o:
        o.addrows(1)
        for c in ("TELESCOPE_NAME", "TIME_RANGE", "OBSERVER", "PROJECT", "RELEASE_DATE", "FLAG_ROW"):
            o.putcell(c, 1, o.getcell(c, 0))
    with table(ms, readonly=False, ack=False) as t:
        sc, ob = t.getcol("SCAN_NUMBER"), t.getcol("OBSERVATION_ID")
        assert sc.max() >= 4
        late = sc >= 4
        ob[late] = 1
        sc[late] -= 3            # the sim's scans cycle three fields: scan 4 -> 1 keeps its field
        t.putcol("OBSERVATION_ID", ob)
        t.putcol("SCAN_NUMBER", sc)


@pytest.mark.parametrize("mode", ["rflag", "tfcrop"])
def test_repeated_scan_numbers_in_another_observation(src, tmp_path, mode):
    from alakazam.caltasks import akflag

    a = _copy(src, str(tmp_path / "a.ms"))
    b = _copy(src, str(tmp_path / "b.ms"))
    _renumber_second_half(b)
    akflag(vis=a, mode=mode)
    akflag(vis=b, mode=mode)
    fa, fb = _flags(a), _flags(b)
    print(f"{mode}: distinct scans {fa.sum()}, scans repeated in OBSERVATION_ID 1 {fb.sum()}")
    assert np.array_equal(fa, fb)                # flagdata: identical (measured)


_CASA = """
import json, sys
from casatasks import flagdata
for ms, kw in json.loads(sys.argv[1]):
    flagdata(vis=ms, flagbackup=False, **kw)
"""


def test_the_pinned_behaviour_is_flagdata(src, tmp_path):
    """CASA 6.7 on the same MSs: what the two tests above expect (skipped without CASA)."""
    import json
    import subprocess

    from casa_python import casa_python

    from alakazam.caltasks import akflag

    py = casa_python()
    if not py or not os.access(py, os.X_OK):
        pytest.skip("no CASA")
    jobs, expect = [], []
    for mode in ("rflag", "tfcrop"):
        for sel in (({"correlation": "XX,YY"}, {"spw": "0:4~27"}) if mode == "rflag" else ()):
            c = _copy(src, str(tmp_path / f"casa_{mode}_{len(jobs)}.ms"))
            e = _copy(src, str(tmp_path / f"emul_{mode}_{len(jobs)}.ms"))
            jobs.append((c, dict(mode=mode, **sel)))
            akflag(vis=e, mode=mode, extendflags=False, **sel)
            akflag(vis=e, mode="extend", extendpols=True, growtime=50.0, growfreq=80.0,
                   **({"spw": "0"} if "spw" in sel else {}))
            expect.append((c, e))
        c = _copy(src, str(tmp_path / f"casa_obs_{mode}.ms"))
        _renumber_second_half(c)
        e = _copy(src, str(tmp_path / f"plain_{mode}.ms"))
        akflag(vis=e, mode=mode)
        jobs.append((c, dict(mode=mode)))
        expect.append((c, e))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([py, "-c", _CASA, json.dumps(jobs)], capture_output=True, text=True, cwd=str(tmp_path),
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    bad = []
    for c, e in expect:
        fc, fe = _flags(c), _flags(e)
        print(f"{os.path.basename(c)}: CASA {fc.sum()}, expected {fe.sum()}, differ {(fc != fe).sum()}")
        if not np.array_equal(fc, fe):
            bad.append(os.path.basename(c))
    assert not bad


@pytest.mark.parametrize("mode", ["rflag", "tfcrop"])
def test_missing_data_column_is_a_parameter_error(src, tmp_path, mode):
    """datacolumn='corrected' on an MS without CORRECTED_DATA: flagdata stops before anything ("Data
    column CORRECTED_DATA does not exist"), akflag's clip / aoflagger / mad name the parameter
    (flagging/select.py); rflag and tfcrop saved a flag version, left 'flags.akflag_1.in_progress' and
    raised casacore's RuntimeError 'TableProxy::getColumn: column CORRECTED_DATA does not exist' with
    "interrupted while writing FLAG: FLAG may be partly changed"."""
    from alakazam.caltasks import akflag
    from alakazam.errors import ParameterError

    ms = _copy(src, str(tmp_path / "nc.ms"))
    with table(ms, ack=False) as t:
        assert "CORRECTED_DATA" not in t.colnames()
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode=mode, datacolumn="corrected", winsize=0 if mode == "rflag" else 3)
    assert "datacolumn" in e.value.errors
    assert not os.path.exists(ms + ".flagversions")
