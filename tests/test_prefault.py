"""Page faults taken on background threads while casacore reads (alakazam/core/prefault.py).

* Never a value: bytes written before, during and after the population are kept (the advice maps
  pages without writing them), and a read with it is the same chunk, bit for bit, as without it.
* Only a hint: off under ALAKAZAM_PREFAULT=0, for small reads, or where madvise lacks the advice.
"""

import threading

import numpy as np
import pytest

from alakazam.core import ms_io, prefault


needs_advice = pytest.mark.skipif(not prefault.enabled(), reason="MADV_POPULATE_WRITE not available here")


@needs_advice
def test_population_keeps_every_byte_written_around_it():
    n = 48 << 20
    a = np.empty(n, np.uint8)
    a[: n // 4] = 7                                  # written before
    pop = prefault.Populate([a], 2)
    # written while the threads populate (from the end back): a second writer on the same pages
    writer = threading.Thread(target=lambda: a.__setitem__(slice(n // 4, n), 9))
    writer.start()
    writer.join()
    pop.join()
    a[-5:] = 3                                       # written after
    assert pop.failed == 0
    assert (a[: n // 4] == 7).all() and (a[n // 4:-5] == 9).all() and (a[-5:] == 3).all()


@needs_advice
def test_populated_pages_keep_values_of_reused_memory():
    a = np.arange(10 << 20, dtype=np.int64)         # already touched: population must not zero it
    ref = a.copy()
    prefault.Populate([a[::1], a[5:]], 1).join()
    assert np.array_equal(a, ref)


@needs_advice
def test_populate_now_keeps_values_and_returns_the_array():
    """populate_now (the solve's fresh accumulators, unit._zeros) faults the pages in on the caller's
    thread and keeps every value: zeros of fresh memory stay zeros, values written before stay."""
    z = np.zeros(3 << 20)                            # fresh: calloc'd, not touched yet
    assert prefault.populate_now(z) is z and not z.any()
    for n in (3 << 20, 10 << 20):                    # 24 MB: one call; 80 MB: on the threads
        a = np.arange(n, dtype=np.float64)
        ref = a.copy()
        assert prefault.populate_now(a) is a
        np.testing.assert_array_equal(a, ref)
    view = a[1::2]                                   # not C-contiguous: left alone
    assert prefault.populate_now(view) is view


def test_unit_zeros_are_zeros_in_any_state(monkeypatch):
    """unit._zeros hands out zeros (or an empty array of the shape) with the advice on or off."""
    from types import SimpleNamespace

    from alakazam import unit

    ctx = SimpleNamespace(tier=2, spare=[])
    for env in ("1", "0"):
        monkeypatch.setenv("ALAKAZAM_PREFAULT", env)
        a = unit._zeros(ctx, (300, 1024, 4), np.complex128)
        assert a.shape == (300, 1024, 4) and a.dtype == np.complex128 and not a.any()
        assert unit._zeros(ctx, (5, 7), np.float64, fill=False).shape == (5, 7)


def test_off_small_and_unavailable(monkeypatch):
    big = np.empty(prefault.MIN_BYTES, np.uint8)
    assert isinstance(prefault.populate([np.empty(16)]), prefault._Nothing)     # small: nothing started
    monkeypatch.setenv("ALAKAZAM_PREFAULT", "0")
    assert not prefault.enabled()
    assert isinstance(prefault.populate([big]), prefault._Nothing)
    monkeypatch.delenv("ALAKAZAM_PREFAULT")
    monkeypatch.setattr(prefault, "_MADVISE", False)                          # a kernel without it
    assert isinstance(prefault.populate([big]), prefault._Nothing)
    prefault.populate([big]).join()                                           # join returns at once
    assert prefault.populate_now(big) is big                                  # a hint: nothing done
    assert 1 <= prefault.n_threads() <= prefault.MAX_THREADS


@pytest.fixture(scope="module")
def one_spw_ms(tmp_path_factory):
    from alakazam.sim import simulate_ms

    ms = str(tmp_path_factory.mktemp("prefault") / "one_spw.ms")
    simulate_ms(ms, feed="linear", n_ant=6, n_chan=(32,), noise=0.05, seed=5, leakage=False)
    return ms


@needs_advice
def test_read_with_population_is_the_same_chunk(one_spw_ms, monkeypatch):
    ms = one_spw_ms
    meta = ms_io.read_meta(ms)
    calls = []
    real = prefault.Populate

    def spy(arrays, n):
        calls.append(sum(x.nbytes for x in arrays))
        return real(arrays, n)

    monkeypatch.setattr(prefault, "Populate", spy)
    monkeypatch.setattr(prefault, "MIN_BYTES", 0)          # engage on the small MS
    with_it = ms_io.read_rows(ms, 0, None, meta=meta)
    monkeypatch.setenv("ALAKAZAM_PREFAULT", "0")
    without = ms_io.read_rows(ms, 0, None, meta=meta)
    assert len(calls) == 1 and calls[0] == with_it.data.nbytes + with_it.model.nbytes + with_it.flag.nbytes
    for name in ("data", "model", "flag", "weight", "time", "ant1", "ant2", "field_id", "scan", "rownr"):
        x, y = getattr(with_it, name), getattr(without, name)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), name


def test_run_wise_read_keeps_weight_spectrum(tmp_path):
    """A read by runs of rows returns WEIGHT_SPECTRUM, not WEIGHT broadcast (a regression of the
    prefault change: the table's column list was overwritten) -- for a column other than DATA (here
    MODEL_DATA read as the data); for DATA, 1/SIGMA_SPECTRUM^2 beside a WEIGHT_SPECTRUM, not SIGMA's
    (core/weights.py)."""
    from casacore.tables import makearrcoldesc, maketabdesc, table

    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "ws.ms")
    simulate_ms(ms, feed="linear", n_ant=4, n_chan=(8,), noise=0.05, seed=3, leakage=False,
                weight_spectrum=True)
    rng = np.random.default_rng(1)
    with table(ms, readonly=False, ack=False) as t:
        ws = rng.uniform(0.5, 2.0, t.getcol("WEIGHT_SPECTRUM").shape).astype(np.float32)
        t.putcol("WEIGHT_SPECTRUM", ws)
    ch = ms_io.read_rows(ms, 0, None, data_col="MODEL_DATA", model_col=None, meta=ms_io.read_meta(ms))
    assert np.array_equal(np.asarray(ch.weight), ws[ch.rownr])
    with table(ms, readonly=False, ack=False) as t:
        t.addcols(maketabdesc(makearrcoldesc("SIGMA_SPECTRUM", 0.0, ndim=2, valuetype="float")), {})
        ss = rng.uniform(0.5, 2.0, ws.shape).astype(np.float32)
        t.putcol("SIGMA_SPECTRUM", ss)
    ch = ms_io.read_rows(ms, 0, None, meta=ms_io.read_meta(ms))
    want = (1 / ss.astype(np.float64) ** 2).astype(np.float32)
    assert np.array_equal(np.asarray(ch.weight), want[ch.rownr])


@needs_advice
@pytest.mark.parametrize("threshold", [5.0, 0.0])
def test_solve_flags_populate_their_fresh_arrays_and_keep_their_values(one_spw_ms, monkeypatch, threshold):
    """flag_chunk (and flag_bad_values without RFI statistics) fault in the pages of the fresh flag arrays
    it fills (``flag`` and ``prior``; the bad values' ``out``) with populate_now: the same flags as with
    population off."""
    from alakazam.core import cellflags

    chunk = ms_io.read_rows(one_spw_ms, 0, None, meta=ms_io.read_meta(one_spw_ms))
    chunk.data[3, 5, 0] = np.nan                  # a bad value, and an RFI spike
    chunk.data[7, 9, :] *= 50
    real = prefault.populate_now
    calls = []

    def spy(a):
        calls.append((a.shape, a.dtype))
        return real(a)

    monkeypatch.setattr(prefault, "populate_now", spy)
    monkeypatch.setattr(prefault, "NOW_MIN_BYTES", 0)      # engage on the small MS
    corr = ["XX", "XY", "YX", "YY"]
    with_it = cellflags.flag_chunk(chunk, corr, threshold)
    assert calls.count((chunk.data.shape, np.dtype(bool))) == (2 if threshold > 0 else 1)
    monkeypatch.setenv("ALAKAZAM_PREFAULT", "0")
    without = cellflags.flag_chunk(chunk, corr, threshold)
    assert with_it[3, 5, 0] and np.array_equal(with_it, without)
