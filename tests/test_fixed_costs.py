"""core/columns.undefined_rows: one TaQL pass (issue 16) finds exactly the rows a per-row
``iscelldefined`` loop finds, with some rows of a column defined and the rest not, in two SPWs of
different shapes; a name TaQL cannot take as is goes through the per-row loop."""

import numpy as np
from casacore.tables import table

from alakazam.core import columns, ms_io
from alakazam.sim import simulate_ms


def test_undefined_rows_as_the_per_row_loop(tmp_path):
    ms = str(tmp_path / "s.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4, 2), duration_h=0.2)
    ms_io.ensure_column(ms, "CORRECTED_DATA", like="DATA", init=False)
    with table(ms, readonly=False, ack=False) as t:
        for r in (3, 7, 8, 40, t.nrows() - 1):
            t.putcell("CORRECTED_DATA", r, np.zeros(t.getcell("DATA", r).shape, np.complex64))
        loop = [r for r in range(t.nrows()) if not t.iscelldefined("CORRECTED_DATA", r)]
    fast = columns.undefined_rows(ms, "CORRECTED_DATA")
    assert fast.dtype == np.int64 and 0 < len(fast) < len(loop) + 5
    np.testing.assert_array_equal(fast, loop)
    assert len(columns.undefined_rows(ms, "DATA")) == 0


def test_name_taql_cannot_take_goes_per_row(monkeypatch, tmp_path):
    import casacore.tables as ct

    ms = str(tmp_path / "s.ms")
    simulate_ms(ms, n_ant=3, n_ant_extra=0, n_chan=(2,), duration_h=0.1)
    monkeypatch.setattr(ct, "taql", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no TaQL")))
    with table(ms, ack=False) as t:
        with np.testing.assert_raises(RuntimeError):      # no such column: casacore says so, per row
            columns.undefined_rows(ms, "NO SUCH-COLUMN")
        assert t.nrows() > 0


def test_row_counts_as_unique_pairs(tmp_path):
    from alakazam.core.ms import MeasurementSet

    ms = str(tmp_path / "s.ms")
    simulate_ms(ms, n_ant=3, n_ant_extra=0, n_chan=(2, 2), duration_h=1.0, scan_len_s=600.0)
    with MeasurementSet.open(ms) as h, table(ms, ack=False) as t:
        for ddid in (0, 1):
            for fields in (None, [0], [1, 2]):
                got = h.row_counts(ddid, fields)
                q = t.query(f"DATA_DESC_ID == {ddid}" + (f" AND FIELD_ID IN [{','.join(map(str, fields))}]"
                                                        if fields else ""))
                fs = np.stack([q.getcol("FIELD_ID"), q.getcol("SCAN_NUMBER")], axis=1)
                pairs, n = np.unique(fs, axis=0, return_counts=True)
                q.close()
                want = {(int(a), int(b)): int(c) for (a, b), c in zip(pairs, n)}
                assert list(got.items()) == list(want.items())
                assert fields is not None or len(got) >= 4          # several fields and scans


HEAVY = ("scipy.fft", "dask", "distributed", "matplotlib", "jax", "prompt_toolkit", "pyceres", "aoflagger",
         "scipy.optimize")


def test_run_modules_import_no_heavy_optional_module():
    """The modules a solve + apply run imports (and the warm-up's solver modules) leave the optional
    heavy modules unimported: each is imported where it is used (0.04-0.5 s each at start-up)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys\n"
            "import alakazam.cli, alakazam.flow, alakazam.calibration.apply, alakazam.caltasks.yamlrun\n"
            "from alakazam import warmup\n"
            "[warmup._kernels(t) for t in warmup.ORDER]\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    path = [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


def test_delay_fft_without_scipy_fft():
    """fringe_fft (K, KC) finds a delay with numpy's FFT: a K solve does not import scipy.fft (0.1 s
    with scipy.special at the first K of a run; tests/test_solvers.py pins its peak against the 8x
    padded FFT)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys\nimport numpy as np\n"
            "from alakazam.solvers.parallel_delay import fringe_fft\n"
            "freq = 1.4e9 + 1e6 * np.arange(64)\n"
            "y = np.exp(2j * np.pi * 37.0e-9 * freq)[None, :]\n"
            "tau, amp = fringe_fft(y, freq, np.ones(64, bool))\n"
            "print(round(float(tau[0]), 1), float(amp[0]) > 0, 'scipy.fft' in sys.modules)\n")
    path = [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    tau, positive, imported = r.stdout.split()
    assert abs(float(tau) - 37.0) < 0.5 and positive == "True" and imported == "False"
