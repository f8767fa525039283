"""Hostile review of columns.recover_killed (commits 7707853, 3a9fcd5): a killed writer's snapshot
``<ms>/alakazam.apply.bak`` put back by any task that takes the MS when the MS does not open.  Each test
failed before its fix (the docstrings say what happened; the emulated killed apply of
_killed_apply_with_new_column_and_cut_header creates its column through columns.prepare, as apply does).

Every case runs the user's commands in separate processes, as after a real kill (a failed open stays in
casacore's per-process table cache), and opens the MS in this process only once it is healthy.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from alakazam.core import columns
from alakazam.sim import simulate_ms

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from signal_child import signal_when_writing  # noqa: E402  (tests/signal_child.py)
from casa_python import run_casa  # noqa: E402

SMALL = dict(n_ant=4, n_ant_extra=1, n_chan=(8,), duration_h=0.5, int_s=120.0, noise=0.05, seed=5,
             leakage=False, dead_ant=False, flag_rows=0.0)
ENV = dict(os.environ, PYTHONPATH=ROOT, ALAKAZAM_NO_PROGRESS="1")


@pytest.fixture
def ms(tmp_path):
    p = str(tmp_path / "k.ms")
    simulate_ms(p, **SMALL)
    return p


def _py(code, check=True, **kw):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=ENV, capture_output=True,
                          text=True, check=check, **kw)


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "alakazam.cli", *args], env=ENV, capture_output=True,
                          text=True, **kw)


def _killed_writer_left_snapshot(ms):
    """What a kill -9 of akflag / apply / a flag restore anywhere outside casacore's header flush leaves:
    the snapshot, and an MS that opens (the usual outcome of a kill)."""
    _py(f"from alakazam.core import columns; columns.begin_writes({ms!r})")
    assert os.path.isdir(os.path.join(ms, columns.SNAPSHOT))


def _cut_flag_header(ms):
    """A later write of FLAG by another program (CASA flagdata, a user's casacore script) killed inside
    casacore's flush of FLAG's storage-manager header: the MS does not open."""
    r = _py(f"""
        from casacore.tables import table
        with table({ms!r}, ack=False) as t:
            print("table.f%d" % t.getdminfo("FLAG")["SEQNR"])
    """)
    with open(os.path.join(ms, r.stdout.strip()), "r+b") as fh:
        fh.truncate(10)
    probe = f"from casacore.tables import table; table({ms!r}, ack=False)"
    assert _py(probe, check=False).returncode != 0
    return r.stdout.strip()


def _files(ms):
    out = {}
    for n in sorted(os.listdir(ms)):
        p = os.path.join(ms, n)
        if os.path.isfile(p) and n.startswith("table.f"):
            with open(p, "rb") as fh:
                out[n] = fh.read()
    return out


@pytest.mark.parametrize("tool", ["casacore", "CASA clearcal"])
def test_stale_snapshot_lets_a_reading_task_delete_another_programs_column(ms, tmp_path, tool):
    """DEFECT (data loss by a read-only task).  A kill -9 of an alakazam writer usually leaves an MS that
    opens, and its snapshot stays (a reading task leaves it; only the next *alakazam* writer clears it).
    The user then works on in CASA (clearcal adds CORRECTED_DATA; or any casacore script adds a column
    and rewrites WEIGHT), and a later CASA write is killed in the header flush.  The next `alakazam info`
    treats the old snapshot as the killed run's: it puts back the table files of weeks ago and DELETES
    every storage-manager file the snapshot does not list -- CASA's CORRECTED_DATA, gone for good -- and
    overwrites the StandardStMan file (WEIGHT, FLAG_ROW, UVW ...) with the old copy, saying only that "a
    run (apply, akflag or a flag restore) was killed".  A task that only reads must never delete or
    overwrite data it did not write; the snapshot is not checked to be the one of the run that broke
    the MS.

    Reproduction (shell): alakazam simulate k.ms; python -c "from alakazam.core import columns;
    columns.begin_writes('k.ms')" (= akflag killed -9); casa: clearcal(vis='k.ms', addmodel=False);
    truncate -s 10 k.ms/table.f2 (= a CASA flagdata killed in its flush); alakazam info k.ms;
    ls k.ms/table.f4* -> gone."""
    _killed_writer_left_snapshot(ms)
    r = _cli("info", ms)                                 # a reading task: the MS opens, left alone
    assert r.returncode == 0, r.stderr
    assert os.path.isdir(os.path.join(ms, columns.SNAPSHOT))
    if tool == "casacore":
        _py(f"""
            from casacore.tables import table, makearrcoldesc, maketabdesc
            with table({ms!r}, readonly=False, ack=False) as t:
                d = t.getcol("DATA")
                desc = makearrcoldesc("CORRECTED_DATA", 0j, ndim=2, shape=list(d.shape[1:]),
                                      valuetype="complex")
                t.addcols(maketabdesc(desc), dminfo={{"TYPE": "TiledShapeStMan", "NAME": "TiledCorr",
                                                     "SPEC": {{"DEFAULTTILESHAPE": [4, 8, 64]}}}})
                t.putcol("CORRECTED_DATA", 2 * d)
                t.putcol("WEIGHT", 0.25 * t.getcol("WEIGHT"))
        """)
    else:
        run_casa(f"""
            from casatasks import clearcal
            clearcal(vis={ms!r}, addmodel=False)
        """, tmp_path)
    r = _py(f"""
        from casacore.tables import table
        with table({ms!r}, ack=False) as t:
            print("table.f%d" % t.getdminfo("CORRECTED_DATA")["SEQNR"])
    """)
    corr_header = r.stdout.strip()
    before = _files(ms)
    assert corr_header in before and any(n.startswith(corr_header + "_TSM") for n in before)
    flag_header = _cut_flag_header(ms)
    _cli("info", ms)                                     # the user's next command: only reads the MS
    after = _files(ms)
    lost = sorted(set(before) - set(after))
    assert not lost, f"a reading task deleted {lost} (CORRECTED_DATA written by {tool})"
    changed = sorted(n for n in before if n in after and after[n] != before[n] and n != flag_header)
    assert not changed, f"a reading task overwrote {changed} with a copy older than {tool}'s writes"


def test_second_reader_stops_on_casacore_error_while_the_first_restores(ms):
    """DEFECT.  After a killed FLAG writer cut the header, two reading tasks start together on the MS (a
    pipeline solving two fields in parallel, or akinfo while akcal starts).  Both find the MS does not
    open; the first takes the MS writer lock and puts the snapshot back; the second gets LockedError,
    which recover_killed swallows, and goes on to open the still-broken MS: it stops with casacore's
    "FilebufIO::readBlock - incorrect number of bytes read" -- nothing says another run is repairing
    the MS or what to do.  It should wait for the lock (the repair takes about a second) and then read,
    or at least name the run holding the lock.

    Free-running reproduction (no emulation), two processes each running ms_io.check_ms then opening
    the table, the second started d seconds after the first: one of the two failed with readBlock for
    d = 0.1, 0.2, 0.3, 0.4 and 0.5 s (5 of 6 offsets tried).  Here the first reader is emulated
    deterministically: it holds the lock for 2 s before putting the snapshot back, as
    recover_killed does (its two probes of the MS in child processes take that long on a loaded
    machine)."""
    _killed_writer_left_snapshot(ms)
    _cut_flag_header(ms)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from alakazam.core import columns, locks
        with locks.writer_lock({ms!r}, "ms"):
            print("held", flush=True)
            time.sleep(2.0)
            columns._recover_table({ms!r})
    """)], env=ENV, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        r = _cli("info", ms, timeout=120)
    finally:
        holder.wait(timeout=60)
    out = r.stdout + r.stderr
    assert "FilebufIO" not in out, out[-2000:]
    assert r.returncode == 0 or f"PID {holder.pid}" in out, out[-2000:]


def test_snapshot_makes_a_reading_task_hang_silently_on_a_locked_ms(ms):
    """DEFECT (message).  Another program has the MS open with a permanent write lock (a CASA session,
    casacore lockoptions='permanent').  Without a snapshot, `alakazam info` prints "Begin Task", waits,
    and casacore says why: "Process N: waiting for read-lock on file .../table.lock" (measured: 29 s
    after the start), then "acquired read-lock" once the other program lets go.  With a snapshot left by
    an earlier kill, check_ms first probes the MS in a child process whose output is captured and which
    has no timeout: the task prints nothing at all -- not even "Begin Task" -- for as long as the other
    program holds the lock (here 45 s of silence)."""
    _killed_writer_left_snapshot(ms)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from casacore.tables import table
        t = table({ms!r}, readonly=False, lockoptions="permanent", ack=False)
        print("held", flush=True)
        time.sleep(120)
    """)], env=ENV, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        p = subprocess.Popen([sys.executable, "-m", "alakazam.cli", "info", ms], env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(45)
        os.killpg(p.pid, signal.SIGKILL)
        out = p.communicate()[0].decode(errors="replace")
    finally:
        holder.kill()
        holder.wait()
    assert "lock" in out, f"45 s of silence; output: {out!r}"


@pytest.mark.parametrize("tool", ["casacore", "CASA initweights"])
def test_weight_written_by_another_program_after_a_killed_calwt_apply_is_reverted(ms, tmp_path, tool):
    """DEFECT (user data silently replaced; neighbourhood of recover_killed: the same "left-over recovery
    data taken as current" class, in core/weightbackup.py).  A calwt apply killed -9 after its WEIGHT
    backup leaves <ms>/alakazam.weights.bak.  The user then recomputes the weights elsewhere (CASA
    initweights / statwt, or a casacore script).  The next alakazam writer -- here an akflag, which has
    nothing to do with weights -- puts WEIGHT back from the stale backup: every row of the user's new
    WEIGHT replaced by the values of before the killed apply, with a warning that "an apply with calwt
    ... left WEIGHT partly rewritten" (it did not: another program rewrote all of it since).

    Reproduction (shell, measured on a 20160-row MS): kill -9 `alakazam run` with an apply
    calwt: [false, true] while it writes; casa: initweights(vis, wtmode='nyq') -> WEIGHT 2e7;
    alakazam flag --vis MS --mode clip --clipminmax 0 1.0 -> WEIGHT 400 again (the simulated values)."""
    _py(f"""
        import numpy as np
        from alakazam.core import columns, ms_io, weightbackup
        columns.begin_writes({ms!r})
        weightbackup.save({ms!r}, np.arange(ms_io.n_rows({ms!r})))
    """)                                # = a calwt apply killed -9 after its backup, before finishing
    assert os.path.isdir(os.path.join(ms, "alakazam.weights.bak"))
    if tool == "casacore":
        _py(f"""
            from casacore.tables import table
            with table({ms!r}, readonly=False, ack=False) as t:
                t.putcol("WEIGHT", 0.25 * t.getcol("WEIGHT"))
        """)
    else:
        run_casa(f"""
            from casatasks import initweights
            initweights(vis={ms!r}, wtmode="nyq")
        """, tmp_path)
    from casacore.tables import table

    with table(ms, ack=False) as t:
        users = t.getcol("WEIGHT")
    r = _cli("flag", "--vis", ms, "--mode", "clip", "--clipminmax", "0", "1.0")
    assert r.returncode == 0, r.stderr[-2000:]
    with table(ms, ack=False) as t:
        now = t.getcol("WEIGHT")
    assert np.array_equal(now, users), (f"akflag replaced the WEIGHT written by {tool} after the kill "
                                        f"(mean {users.mean():.4g}) by the stale backup "
                                        f"(mean {now.mean():.4g})")


def test_alakazam_recover_says_nothing_to_recover_after_recovering(ms):
    """DEFECT (message).  `alakazam recover --vis MS` on an MS a killed FLAG writer left unopenable:
    check_ms (recover_killed) puts the snapshot back first, then cmd_recover looks for the snapshot --
    gone -- and prints "MS: nothing to recover" right under the warning that it restored the table."""
    _killed_writer_left_snapshot(ms)
    _cut_flag_header(ms)
    r = _cli("recover", "--vis", ms)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "restoring the table" in " ".join(r.stderr.split())
    assert "nothing to recover" not in r.stdout, r.stdout


def _killed_apply_with_new_column_and_cut_header(ms):
    """What an apply killed -9 inside casacore's header flush leaves when it was writing a new output
    column with propagate_flags: the snapshot, CORRECTED_DATA_AKPARTIAL (its files table.fN*), FLAG
    partly rewritten, and FLAG's header cut short (the MS does not open)."""
    _py(f"""
        from alakazam.core import columns
        from casacore.tables import table
        columns.begin_writes({ms!r})
        part, created = columns.prepare({ms!r}, "CORRECTED_DATA", "DATA", init=False)   # as apply does
        assert part == "CORRECTED_DATA_AKPARTIAL" and created
        with table({ms!r}, readonly=False, ack=False) as t:
            d = t.getcol("DATA")
            t.putcol(part, d)
            f = t.getcol("FLAG")
            f[::2] = True
            t.putcol("FLAG", f)
    """)
    return _cut_flag_header(ms)


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_reader_interrupted_while_restoring_leaves_an_ms_no_writer_can_write(ms, sig):
    """DEFECT (a re-run does not finish the job; the MS ends up unwritable by alakazam and CASA).
    A reading task (akinfo) puts back a killed apply's snapshot (_recover_table copies table.dat first,
    then table.f0 ... table.lock, then deletes the killed run's new files) and is itself killed -9 or
    interrupted by Ctrl-C (SIGINT: KeyboardInterrupt; _recover_table defers no signal) after table.f2.
    From then on the MS *opens* (old table.dat, no partial column) although table.lock is the killed
    run's, and the partial column's files are orphaned: the next akinfo does nothing (the MS opens);
    the next writer's recover takes the 'dropped' path and REMOVES THE SNAPSHOT, then stops on
    casacore's "Table::lock cannot sync table ...; another process changed the number of columns" --
    and so does every later akflag / akapply, and CASA's flagdata (checked by hand), with nothing
    left to undo it.

    The interrupt is delivered right after the 4th file (table.f2) is put back by a real
    recover_killed."""
    _killed_apply_with_new_column_and_cut_header(ms)
    r = _py(f"""
        import os, signal
        from alakazam.core import columns
        real, n = os.replace, []
        def replace(a, b, **kw):
            real(a, b, **kw)
            if str(a).endswith(".restore"):
                n.append(b)
                if len(n) == 4:                     # table.dat, table.f0, table.f1, table.f2 put back
                    os.kill(os.getpid(), signal.{sig})
        os.replace = replace
        columns.recover_killed({ms!r})
    """, check=False)
    assert r.returncode != 0
    first = _cli("info", ms)                     # the user's next command
    assert first.returncode == 0, first.stderr[-2000:]
    writer = _cli("flag", "--vis", ms, "--mode", "clip", "--clipminmax", "0", "1.0")
    again = _cli("flag", "--vis", ms, "--mode", "clip", "--clipminmax", "0", "1.0")
    out = writer.stderr + again.stderr
    assert writer.returncode == 0 or again.returncode == 0, out[-3000:]
    left = sorted(n for n in os.listdir(ms) if n.startswith("table.f") and n not in _listed(ms))
    assert not left, f"files of the killed apply's partial column left behind: {left}"


def _listed(ms):
    """The storage-manager files table.dat names now (read in a child process)."""
    r = _py(f"""
        from casacore.tables import table
        with table({ms!r}, ack=False) as t:
            print(" ".join(str(v["SEQNR"]) for v in t.getdminfo().values()))
    """)
    seq = r.stdout.split()
    return {n for n in os.listdir(ms) if n.startswith("table.f") and
            any(n == f"table.f{s}" or n.startswith(f"table.f{s}_") or n == f"table.f{s}i" for s in seq)}


def test_akshell_undo_rewrites_the_ms_without_lock_or_snapshot(ms, tmp_path, monkeypatch):
    """DEFECT (the one-writer rule and the kill -9 guarantee do not cover akshell's undo).  In akshell
    (`go akapply`, core/undo.transaction) Ctrl-C during an apply into an existing CORRECTED_DATA: the
    apply ends (its MS writer lock released, its snapshot removed by end_writes), then the undo
    journal writes the saved CORRECTED_DATA rows back (MSJournal.rollback: table(readonly=False),
    putcol) with neither the MS writer lock nor a snapshot.  Meanwhile another akflag / akapply may
    take the lock and write the MS too (two writers), and a kill -9 of the shell inside casacore's
    header flush of that rollback leaves an MS that does not open with no snapshot for
    recover_killed to put back."""
    from alakazam.caltasks import akapply
    from alakazam.config import solve_config_from_dict
    from alakazam.core import locks, ms_io, undo
    from alakazam.core.ms import MeasurementSet
    from alakazam.flow import run_solve

    cal = str(tmp_path / "g.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, jones=["G"], ref_ant="C00",
                                          time_interval="inf", quiet=True)))
    akapply(vis=ms, gaintable=[cal], jones=["G0"], interp=["linear"])       # an existing CORRECTED_DATA

    real_write = MeasurementSet.write_column

    def write_then_ctrl_c(self, name, *a, **k):
        real_write(self, name, *a, **k)
        if name == "CORRECTED_DATA":
            raise KeyboardInterrupt("Ctrl-C after the first CORRECTED_DATA write")
    monkeypatch.setattr(MeasurementSet, "write_column", write_then_ctrl_c)

    seen = []
    real_table = ms_io._table

    def table_watch(path, *a, **k):
        if k.get("readonly") is False and undo.active() is None:       # the rollback's writes
            seen.append((locks.lock_file_for(ms, "ms") in locks._held,
                         os.path.isdir(os.path.join(ms, columns.SNAPSHOT))))
        return real_table(path, *a, **k)
    monkeypatch.setattr(ms_io, "_table", table_watch)

    with pytest.raises(KeyboardInterrupt):
        with undo.transaction(ms=ms):
            akapply(vis=ms, gaintable=[cal], jones=["G0"], interp=["nearest"])
    assert seen, "the rollback wrote nothing"
    assert all(lock for lock, _ in seen), f"rollback writes without the MS writer lock: {seen}"
    assert all(snap for _, snap in seen), f"rollback writes without a snapshot to undo a kill: {seen}"


def test_solve_from_a_column_a_killed_apply_was_rewriting_does_not_warn(ms, tmp_path, caplog):
    """DEFECT (silently wrong results).  akapply into an EXISTING CORRECTED_DATA rewrites it in place; a
    kill -9 in the middle leaves some rows with the new correction and the rest with the old one.  The
    only trace is the snapshot <ms>/alakazam.apply.bak (no marker, no partial column: Ctrl-C or SIGTERM
    would have said "rewriting CORRECTED_DATA ... half done", a kill -9 says nothing).  The next task is
    a solve FROM CORRECTED_DATA (self-calibration of the target after an apply): the MS opens, so
    recover_killed leaves everything as it is, and the solve runs on the mixed column without a word --
    unlike FLAG (the in-progress marker) and WEIGHT (the calwt backup), for which a solve warns and
    names the command.  Expected: a WARNING naming CORRECTED_DATA and that an apply was interrupted
    while writing it (re-run the apply)."""
    import logging

    from alakazam.caltasks import akapply
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve

    cal = str(tmp_path / "g.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, jones=["G"], ref_ant="C00",
                                          time_interval="inf", quiet=True)))
    akapply(vis=ms, gaintable=[cal], jones=["G0"], interp=["linear"])       # an existing CORRECTED_DATA
    cal2 = str(tmp_path / "g2.h5")                                          # other gains: other values
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal2, jones=["G"], ref_ant="C00",
                                          time_interval="240s", quiet=True)))
    from casacore.tables import table

    with table(ms, ack=False) as t:
        old = t.getcol("CORRECTED_DATA")
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from alakazam.caltasks import akapply
        from alakazam.core.ms import MeasurementSet
        real = MeasurementSet.write_column
        def write_then_hang(self, name, *a, **k):
            real(self, name, *a, **k)
            if name == "CORRECTED_DATA":
                print("writing", flush=True)
                time.sleep(120)
        MeasurementSet.write_column = write_then_hang
        akapply(vis={ms!r}, gaintable=[{cal2!r}], jones=["G0"], interp=["linear"], memory_limit_gb=0.0001)
    """)], env=ENV, stdout=subprocess.PIPE)
    signal_when_writing(p, signal.SIGKILL)
    assert os.path.isdir(os.path.join(ms, columns.SNAPSHOT))       # the kill landed mid-rewrite
    with table(ms, ack=False) as t:
        now = t.getcol("CORRECTED_DATA")
    changed = np.any((now != old).reshape(len(old), -1), axis=1)
    assert 0 < changed.sum() < len(changed), changed.sum()        # some rows new, the others old
    caplog.set_level(logging.WARNING)
    run_solve(solve_config_from_dict(dict(ms=ms, output=str(tmp_path / "self.h5"), jones=["G"],
                                          ref_ant="C00", time_interval="inf", quiet=True,
                                          data_col="CORRECTED_DATA")))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("CORRECTED_DATA" in m and "interrupt" in m for m in said), said


def test_yaml_is_not_validated_up_front_while_a_snapshot_is_left(ms, tmp_path):
    """DEFECT ("Every block is checked before anything runs", README).  core/selcheck.py skips the check
    of every selection against the MS (fields, scans, refant ...) when <ms>/alakazam.apply.bak exists
    ("a killed write: the engine repairs it first, so the MS is not opened here") -- written before
    recover_killed existed; check_ms now repairs a cut MS itself.  A kill -9 of any writer that leaves
    an MS that opens (the usual case) leaves that snapshot until the next alakazam writer, so the
    user's re-run of the YAML after the kill, with a typo in the apply's target_field, runs the flag
    block (FLAG written, flag version akflag_1) and the solve (table written) before stopping on the
    typo.  Without the snapshot the same file stops at once: "invalid parameters ... apply[0].
    target_field: '3C28' (item 0) is not a field name or id", nothing written."""
    _killed_writer_left_snapshot(ms)
    cal = str(tmp_path / "v.h5")
    yml = tmp_path / "v.yaml"
    yml.write_text(textwrap.dedent(f"""\
        flag:
          - {{ms: {ms}, mode: clip, clipminmax: [0, 1.0], quiet: true}}
        solve:
          - {{ms: {ms}, output: {cal}, jones: [G], ref_ant: C00, quiet: true}}
        apply:
          - {{ms: {ms}, jones: [G0], tables: [{cal}], target_field: [3C28], quiet: true}}
    """))
    r = _cli("--quiet", "run", str(yml))
    assert r.returncode != 0
    assert "3C28" in r.stderr
    assert "invalid parameters" in r.stderr, r.stderr[-1500:]
    assert not os.path.exists(cal), "the solve ran and wrote its table before the typo was reported"
    assert not os.path.isdir(ms + ".flagversions"), "the flag block wrote FLAG before the typo was reported"


def test_akinfo_says_what_a_killed_run_left(ms):
    """akinfo (listobs of the MS) says, as the other tasks on the MS do, that a killed calwt apply left
    WEIGHT partly rewritten and that a killed in-place apply left CORRECTED_DATA half rewritten (the
    review: akinfo said neither)."""
    _py(f"""
        import numpy as np
        from alakazam.core import columns, ms_io, weightbackup
        columns.begin_writes({ms!r})
        columns._record_rewrite({ms!r}, "CORRECTED_DATA")
        weightbackup.save({ms!r}, np.arange(ms_io.n_rows({ms!r})))
    """)                                # = an apply with calwt into an existing column, killed -9
    r = _cli("info", ms)
    assert r.returncode == 0, r.stderr[-2000:]
    said = " ".join(r.stderr.split())
    assert "WEIGHT may be partly rewritten" in said and "alakazam recover --vis" in said, said[-2000:]
    assert "rewriting CORRECTED_DATA in place was interrupted" in said, said[-2000:]


def test_unlockable_broken_ms_says_why(ms, monkeypatch):
    """An MS a killed writer left unopenable that cannot be locked (a read-only file system: no lock file
    can be made -- the review saw only "cannot create the lock file ... must be writable", not why the
    task needed to write): the error says the MS does not open and that the saved table files cannot
    be put back, then the lock's reason.  Once the MS can be locked, the next task puts them back."""
    from contextlib import contextmanager

    from alakazam.core import locks
    from alakazam.errors import AlakazamError

    _killed_writer_left_snapshot(ms)
    _cut_flag_header(ms)
    real = locks.writer_lock

    @contextmanager
    def read_only(path, kind="table"):
        raise AlakazamError(f"{path}: cannot create the lock file {path}/alakazam.lock (Read-only file "
                            "system); the Measurement Set's directory must be writable")
        yield
    monkeypatch.setattr(locks, "writer_lock", read_only)
    with pytest.raises(AlakazamError, match=r"does not open .* cannot be put back: .*Read-only file system"):
        columns.recover_killed(ms)
    monkeypatch.setattr(locks, "writer_lock", real)
    assert columns.recover_killed(ms) == "restored"
