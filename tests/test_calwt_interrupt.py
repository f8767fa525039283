"""calwt and interrupts: WEIGHT (and WEIGHT_SPECTRUM) of an apply with calwt are saved before the first
write and put back when the apply is interrupted, fails, or is killed (the next apply puts them back).

From branch review-gmrt (commit 150cbec, tests/test_review_gmrt.py::
test_interrupted_calwt_apply_restores_or_reports_weight) and the fix on branch calwt.
"""

import os
import sys

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akapply, akcal
from alakazam.sim.simulate import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hazards import rr_ll_ms as _rr_ll_ms  # noqa: E402  (tests/hazards.py)

NOISE = 0.1




# ---------------------------------------------------------------------------------------------------
# 3. an interrupted apply with calwt leaves WEIGHT rewritten, and says nothing about it
# ---------------------------------------------------------------------------------------------------

def test_interrupted_calwt_apply_restores_or_reports_weight(tmp_path, monkeypatch, caplog):
    """Ctrl-C during `alakazam run` of an apply block with calflag + calwt (the CLI, not akshell, whose
    undo does put WEIGHT back): the new CORRECTED_DATA is dropped (its _AKPARTIAL column), FLAG gets
    an ERROR naming the restore command -- but WEIGHT, rewritten in place chunk by chunk, stays
    rewritten for the rows done so far and no message names it.  A user who then re-runs without
    calwt (alakazam's default) keeps those scaled weights for good, with no CORRECTED_DATA at all.

    Measured at e098209 with `alakazam run` and SIGINT 5.0 s / 6.5 s after start on the 24-antenna MS
    (applymode calflag, calwt true): CORRECTED_DATA absent, WEIGHT changed in 0.667 of the rows, FLAG
    changed; messages: 'apply interrupted (KeyboardInterrupt) while writing FLAG: FLAG may be partly
    changed; restore it with ...' and 'alakazam: interrupted (solution files are only ever replaced
    whole)'.  Here the interrupt is injected after the first calwt write."""
    import logging

    from alakazam.calibration import calwt as calwt_mod

    ms, _ = _rr_ll_ms(tmp_path, "calwt", n_chan=(16,))
    cal = str(tmp_path / "g.h5")
    akcal(vis=ms, caltable=cal, field="3C286,3C147", refant="C00", jones=["G"], solint=["scan"])
    with table(ms, ack=False) as t:
        w0 = t.getcol("WEIGHT")
    orig = calwt_mod.write
    calls = []

    def write_then_interrupt(*a, **k):
        orig(*a, **k)
        calls.append(1)
        raise KeyboardInterrupt
    monkeypatch.setattr(calwt_mod, "write", write_then_interrupt)
    caplog.set_level(logging.INFO)
    with pytest.raises(KeyboardInterrupt):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], interp=["linear"], applymode="calflag", calwt=True)
    assert calls, "calwt.write was never reached"
    with table(ms, ack=False) as t:
        w1 = t.getcol("WEIGHT")
        cols = t.colnames()
    changed = float(np.mean(np.any(w1 != w0, axis=1)))
    said = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "WEIGHT" in r.getMessage()]
    assert changed == 0.0 or said, (f"after the interrupt WEIGHT is changed in {changed:.3f} of the rows, "
                                    f"CORRECTED_DATA {'present' if 'CORRECTED_DATA' in cols else 'absent'}, "
                                    f"and no warning names WEIGHT")


# ---------------------------------------------------------------------------------------------------
# the fix (core/weightbackup.py): WEIGHT saved before the first calwt write, put back when the apply
# stops, by the next writer after a kill -9; a re-run gives the weights of an uninterrupted run
# ---------------------------------------------------------------------------------------------------

import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import textwrap  # noqa: E402

from alakazam.core import weightbackup  # noqa: E402

WCOLS = ("WEIGHT", "WEIGHT_SPECTRUM", "SIGMA")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 2-SPW linear-feed MS with WEIGHT_SPECTRUM whose WEIGHT / WEIGHT_SPECTRUM are the user's own
    (1/SIGMA^2 times a factor per row and channel: what calwt, deriving from SIGMA, cannot give back),
    and a G table of 3C286 + 3C147 (solint scan) for SPW 0 and 1."""
    d = tmp_path_factory.mktemp("calwtbase")
    ms = str(d / "b.ms")
    simulate_ms(ms, feed="linear", n_ant=6, n_ant_extra=0, n_chan=(8, 8), duration_h=0.75, int_s=60,
                scan_len_s=300, noise=0.05, seed=11, leakage=False, dead_ant=False, flag_rows=0.0,
                weight_spectrum=True)
    rng = np.random.default_rng(3)
    with table(ms, readonly=False, ack=False) as t:
        w = t.getcol("WEIGHT")
        t.putcol("WEIGHT", (w * rng.uniform(0.5, 2.0, w.shape)).astype(np.float32))
        ws = t.getcol("WEIGHT_SPECTRUM")
        t.putcol("WEIGHT_SPECTRUM", (ws * rng.uniform(0.5, 2.0, ws.shape)).astype(np.float32))
    cal = str(d / "g.h5")
    akcal(vis=ms, caltable=cal, field="3C286,3C147", refant="C00", jones=["G"], solint=["scan"],
          minblperant=0)
    return ms, cal


def _copy(base, tmp_path, name="m.ms"):
    ms = str(tmp_path / name)
    shutil.copytree(base[0], ms)
    return ms


def _cols(ms, names=WCOLS + ("FLAG",)):
    with table(ms, ack=False) as t:
        return {c: t.getcol(c) for c in names if c in t.colnames()}


def _interrupt_after_first_write(monkeypatch, exc=KeyboardInterrupt):
    from alakazam.calibration import calwt as calwt_mod

    orig = calwt_mod.write
    calls = []

    def write_then_stop(*a, **k):
        orig(*a, **k)
        calls.append(1)
        raise exc("injected after the first calwt write")
    monkeypatch.setattr(calwt_mod, "write", write_then_stop)
    return calls


APPLY = dict(jones=["G0"], interp=["linear"], applymode="calflag", calwt=True, memory_limit_gb=0.0005)


def _rows_changed(a, b):
    return float(np.mean(np.any((a != b).reshape(len(a), -1), axis=1)))


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_stopped_calwt_apply_puts_weight_back_exactly(base, tmp_path, monkeypatch, caplog, exc):
    """Ctrl-C (or an error) after the first calwt write: WEIGHT and WEIGHT_SPECTRUM bit-identical to
    before (the user's own weights, not 1/SIGMA^2), SIGMA untouched, the backup removed, and a WARNING
    that names WEIGHT and says it was put back."""
    ms = _copy(base, tmp_path)
    before = _cols(ms)
    calls = _interrupt_after_first_write(monkeypatch, exc)
    caplog.set_level(logging.INFO)
    with pytest.raises(exc):
        akapply(vis=ms, gaintable=[base[1]], **APPLY)
    assert calls
    after = _cols(ms)
    for c in WCOLS:
        assert np.array_equal(after[c], before[c]), c
    assert not weightbackup.pending(ms) and not os.path.exists(weightbackup.backup_path(ms))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "WEIGHT" in
            r.getMessage()]
    assert any("put back as they were before the apply" in m and "WEIGHT_SPECTRUM" in m for m in said), said
    with table(ms, ack=False) as t:
        assert "CORRECTED_DATA" not in t.colnames()


def test_rerun_after_interrupt_gives_the_weights_of_an_uninterrupted_run(base, tmp_path, monkeypatch):
    """An interrupted calwt apply, then the same apply again: WEIGHT, WEIGHT_SPECTRUM, CORRECTED_DATA and
    FLAG identical to one uninterrupted apply (calwt derives WEIGHT from SIGMA: no compounded scaling)."""
    ref = _copy(base, tmp_path, "ref.ms")
    akapply(vis=ref, gaintable=[base[1]], **APPLY)
    ms = _copy(base, tmp_path)
    with monkeypatch.context() as m:
        _interrupt_after_first_write(m)
        with pytest.raises(KeyboardInterrupt):
            akapply(vis=ms, gaintable=[base[1]], **APPLY)
    akapply(vis=ms, gaintable=[base[1]], **APPLY)
    names = WCOLS + ("FLAG", "CORRECTED_DATA")
    a, b = _cols(ref, names), _cols(ms, names)
    for c in names:
        assert np.array_equal(a[c], b[c]), c
    # and the weights were rewritten by calwt (the test can fail)
    assert _rows_changed(b["WEIGHT"], _cols(base[0])["WEIGHT"]) > 0.9


def test_calwt_twice_is_idempotent(base, tmp_path):
    """Two complete calwt applies give the weights of one (derived from SIGMA, never compounded)."""
    ms = _copy(base, tmp_path)
    akapply(vis=ms, gaintable=[base[1]], **APPLY)
    one = _cols(ms)
    akapply(vis=ms, gaintable=[base[1]], **APPLY)
    two = _cols(ms)
    for c in WCOLS:
        assert np.array_equal(one[c], two[c]), c
    assert not weightbackup.pending(ms)


def test_weight_is_written_only_after_its_backup(base, tmp_path):
    """WEIGHT / WEIGHT_SPECTRUM of an existing MS are written only inside weight_writes (as FLAG only
    after its flag version): a write outside is an AlakazamError, nothing written."""
    from alakazam.core import ms_io
    from alakazam.errors import AlakazamError

    ms = _copy(base, tmp_path)
    before = _cols(ms)
    for c in ("WEIGHT", "WEIGHT_SPECTRUM"):
        with pytest.raises(AlakazamError, match="backup is saved"):
            ms_io.write_column(ms, c, np.arange(2), before[c][:2] * 2)
    assert np.array_equal(_cols(ms)["WEIGHT"], before["WEIGHT"])


def test_failed_put_back_keeps_the_backup_and_says_how(base, tmp_path, monkeypatch, caplog):
    """When putting WEIGHT back fails, the backup stays and an ERROR says WEIGHT is partly rewritten,
    where the weights are and the command; the next apply (here without calwt) puts them back first."""
    ms = _copy(base, tmp_path)
    before = _cols(ms)
    with monkeypatch.context() as m:
        _interrupt_after_first_write(m)

        def broken(ms_):
            raise OSError("injected: cannot write")
        m.setattr(weightbackup, "restore", broken)
        caplog.set_level(logging.INFO)
        with pytest.raises(KeyboardInterrupt):
            akapply(vis=ms, gaintable=[base[1]], **APPLY)
    errs = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and "WEIGHT" in r.getMessage()]
    assert any("WEIGHT is partly rewritten" in e and f"alakazam recover --vis {ms}" in e for e in errs), errs
    assert weightbackup.pending(ms)
    assert _rows_changed(_cols(ms)["WEIGHT"], before["WEIGHT"]) > 0
    caplog.clear()
    akapply(vis=ms, gaintable=[base[1]], jones=["G0"], interp=["linear"])        # calwt off
    assert np.array_equal(_cols(ms)["WEIGHT"], before["WEIGHT"])
    assert np.array_equal(_cols(ms)["WEIGHT_SPECTRUM"], before["WEIGHT_SPECTRUM"])
    assert not weightbackup.pending(ms)
    assert any("did not finish and left WEIGHT partly rewritten" in r.getMessage() for r in caplog.records)


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from alakazam.calibration import calwt
    orig = calwt.write
    n = [0]
    def write(*a, **k):
        orig(*a, **k)
        n[0] += 1
        if n[0] == int(os.environ["AK_AFTER"]):
            os.kill(os.getpid(), getattr(signal, os.environ["AK_SIGNAL"]))
    calwt.write = write
    from alakazam.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _run_cli(tmp_path, args, sig, after=1):
    script = tmp_path / "killer.py"
    script.write_text(_KILLER)
    env = dict(os.environ, AK_SIGNAL=sig, AK_AFTER=str(after),
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
                                          + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                             if p]))
    return subprocess.run([sys.executable, str(script)] + args, capture_output=True, text=True, env=env,
                          timeout=600)


def _yaml(tmp_path, ms, cal, calwt=True):
    p = tmp_path / "apply.yaml"
    p.write_text(f"apply:\n  - ms: {ms}\n    jones: [G0]\n    tables: [{cal}]\n    time_interp: [linear]\n"
                 f"    applymode: calflag\n    calwt: {str(calwt).lower()}\n    memory_limit_gb: 0.0005\n")
    return str(p)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_alakazam_run_interrupted_by_a_signal_puts_weight_back(base, tmp_path, sig):
    """`alakazam run` of a calwt apply, SIGINT / SIGTERM delivered after the first calwt write: exit 130,
    WEIGHT and WEIGHT_SPECTRUM as before, stderr says so, no backup left."""
    ms = _copy(base, tmp_path)
    before = _cols(ms)
    r = _run_cli(tmp_path, ["run", _yaml(tmp_path, ms, base[1])], sig)
    assert r.returncode == 130, r.stderr[-3000:]
    after = _cols(ms)
    for c in WCOLS:
        assert np.array_equal(after[c], before[c]), (c, r.stderr[-3000:])
    err = " ".join(r.stderr.split())          # (the console log wraps its lines)
    assert "WEIGHT and WEIGHT_SPECTRUM" in err, err[-3000:]
    assert "put back as they were before the apply" in err, err[-3000:]
    assert not weightbackup.pending(ms)


@pytest.mark.parametrize("how", ["next apply", "alakazam recover", "akflag"])
def test_sigkill_during_calwt_apply_next_writer_puts_weight_back(base, tmp_path, caplog, how):
    """kill -9 after the second calwt write (no handler runs): WEIGHT is left rewritten in part of the
    rows and the backup stays in the MS; the next apply (without calwt), `alakazam recover` or akflag
    puts WEIGHT and WEIGHT_SPECTRUM back bit-exactly, says so, and removes the backup."""
    ms = _copy(base, tmp_path)
    before = _cols(ms)
    r = _run_cli(tmp_path, ["run", _yaml(tmp_path, ms, base[1])], "SIGKILL", after=2)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert weightbackup.pending(ms)
    killed = _cols(ms)
    frac = _rows_changed(killed["WEIGHT"], before["WEIGHT"])
    assert 0 < frac < 1, frac
    with open(os.path.join(weightbackup.backup_path(ms), "info.json")) as fh:
        assert json.load(fh)["rows"]["WEIGHT"] == len(before["WEIGHT"])
    caplog.set_level(logging.INFO)
    if how == "next apply":
        akapply(vis=ms, gaintable=[base[1]], jones=["G0"], interp=["linear"])      # calwt off
        text = " ".join(rec.getMessage() for rec in caplog.records)
    elif how == "akflag":
        from alakazam.caltasks import akflag
        akflag(vis=ms, mode="clip", clipminmax=[0, 1e9])
        text = " ".join(rec.getMessage() for rec in caplog.records)
    else:
        r2 = _run_cli(tmp_path, ["recover", "--vis", ms], "SIGUSR2", after=10 ** 9)
        assert r2.returncode == 0, r2.stderr
        text = " ".join((r2.stderr + r2.stdout).split())
    assert "did not finish and left WEIGHT partly rewritten" in text, text[-3000:]
    after = _cols(ms)
    for c in WCOLS:
        assert np.array_equal(after[c], before[c]), c
    assert not weightbackup.pending(ms)


def test_solve_from_corrected_warns_while_weight_is_partly_rewritten(base, tmp_path, caplog):
    """After a kill -9, before any writer put WEIGHT back: a solve from CORRECTED_DATA (weighted by
    WEIGHT) warns, naming the command."""
    ms = _copy(base, tmp_path)
    akapply(vis=ms, gaintable=[base[1]], jones=["G0"], interp=["linear"])      # a CORRECTED_DATA
    r = _run_cli(tmp_path, ["run", _yaml(tmp_path, ms, base[1])], "SIGKILL", after=2)
    assert r.returncode == -signal.SIGKILL
    caplog.set_level(logging.INFO)
    akcal(vis=ms, caltable=str(tmp_path / "c2.h5"), field="3C286", refant="C00", jones=["G"],
          solint=["inf"], datacolumn="CORRECTED_DATA", minblperant=0)
    said = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING and
            "WEIGHT" in rec.getMessage()]
    assert any(f"alakazam recover --vis {ms}" in m for m in said), said


def test_akshell_undo_and_the_backup_agree(base, tmp_path, monkeypatch):
    """Inside akshell's undo transaction (core/undo.py): the interrupted calwt apply's WEIGHT is put back
    (by the backup, then again by the journal: the same values), no backup is left."""
    from alakazam.core import undo

    ms = _copy(base, tmp_path)
    before = _cols(ms)
    _interrupt_after_first_write(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        with undo.transaction(ms=ms):
            akapply(vis=ms, gaintable=[base[1]], **APPLY)
    after = _cols(ms)
    for c in WCOLS + ("FLAG",):
        assert np.array_equal(after[c], before[c]), c
    assert not weightbackup.pending(ms)


def test_distributed_calwt_apply_writes_and_interrupts_like_one_process(base, tmp_path, monkeypatch):
    """With workers (the client writes every chunk): the same weights as one process, and an interrupt
    after the first calwt write puts WEIGHT back."""
    pytest.importorskip("distributed")
    ref = _copy(base, tmp_path, "ref.ms")
    akapply(vis=ref, gaintable=[base[1]], **APPLY)
    ms = _copy(base, tmp_path)
    akapply(vis=ms, gaintable=[base[1]], workers=1, **APPLY)
    for c in WCOLS:
        assert np.array_equal(_cols(ms)[c], _cols(ref)[c]), c
    ms2 = _copy(base, tmp_path, "m2.ms")
    before = _cols(ms2)
    from alakazam.calibration import apply as ap

    orig = ap._write
    n = []

    def write(cfg, col, *a, **k):                 # the client's writes (distributed_apply)
        orig(cfg, col, *a, **k)
        if col == "WEIGHT":
            n.append(1)
            raise KeyboardInterrupt
    monkeypatch.setattr(ap, "_write", write)
    with pytest.raises(KeyboardInterrupt):
        akapply(vis=ms2, gaintable=[base[1]], workers=1, **APPLY)
    assert n
    for c in WCOLS:
        assert np.array_equal(_cols(ms2)[c], before[c]), c
    assert not weightbackup.pending(ms2)


def test_a_save_cut_short_leaves_no_backup_and_its_temporary_goes(base, tmp_path):
    """A kill -9 while the copy is being saved leaves only its temporary (``.tmp.<host>.<pid>``), never a
    backup (nothing was written to WEIGHT yet): the next writer's recover removes it and puts nothing
    back."""
    import socket

    from alakazam.core import columns

    ms = _copy(base, tmp_path)
    before = _cols(ms)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    tmp = os.path.join(ms, f"{weightbackup.BACKUP}.tmp.{socket.gethostname()}.{dead}")
    os.makedirs(tmp)
    np.save(os.path.join(tmp, "WEIGHT_0.npy"), np.zeros((3, 4), np.float32))
    assert not weightbackup.pending(ms)
    assert columns.recover(ms) is None
    assert not os.path.exists(tmp)
    assert np.array_equal(_cols(ms)["WEIGHT"], before["WEIGHT"])
