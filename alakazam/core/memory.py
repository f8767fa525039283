"""Memory planning for the solve and apply flows (the three tiers of SEED.md).

Tier 1: every selected row fits under the limit -> one read kept for all steps.
Tier 2: the largest time bin (group) fits -> one read per bin, chunks made of whole bins.
Tier 3: a single bin exceeds the limit -> row chunks smaller than a bin, summed with the running
accumulator of :mod:`alakazam.core.averaging` (identical sums, so identical solutions).
"""

import contextlib

import psutil

from ..errors import AlakazamError

#: bytes per visibility sample (one chan x corr of one row) held while a chunk is processed:
#: DATA and MODEL_DATA as read (complex64, 8 B each), their complex128 working copies after the
#: pre-apply corrections (16 B each), the weight (float32 as read + float64 working, 12 B) and the
#: flags (read + RFI copy, 2 x 1 B): 62 B, i.e. ~3.9x the 16 B of DATA + MODEL_DATA on disk.
BYTES_PER_SAMPLE = 8 + 8 + 16 + 16 + 12 + 2

#: bytes per visibility sample resident in the solve flow (tier 1 cache or a tier 2/3 read):
#: DATA and MODEL_DATA as read (complex64, 8 B each), the weight (float32, 4 B: 1/SIGMA_SPECTRUM^2 or
#: WEIGHT_SPECTRUM, :mod:`alakazam.core.weights`; from SIGMA or WEIGHT a broadcast view) and FLAG with
#: its RFI-flagged copy (2 x 1 B): 22 B.  The solve's fused pass
#: (:func:`alakazam.core.averaging.accumulate_corrected`) makes no (row, chan, corr) working copy;
#: the accumulators and Jones tables are per baseline / antenna, not per row.
SOLVE_BYTES_PER_SAMPLE = 8 + 8 + 4 + 2

#: per-row overhead: TIME, ANTENNA1/2, FLAG_ROW, bin and baseline indices
BYTES_PER_ROW_OVERHEAD = 64

#: default fraction of the available RAM (memory_limit_gb = 0)
DEFAULT_FRACTION = 0.4


def available_bytes() -> int:
    """Currently available RAM in bytes (psutil)."""
    return int(psutil.virtual_memory().available)


def memory_limit_bytes(memory_limit_gb: float) -> int:
    """Memory limit in bytes.

    Parameters
    ----------
    memory_limit_gb : float
        Limit in GB (1e9 bytes); 0 (or None) = 40% of the available RAM (with what
        :mod:`alakazam.core.readcache` keeps and the spare read memory of
        :mod:`alakazam.core.readbuffers` counted as available).

    Returns
    -------
    int
    """
    if memory_limit_gb is None or memory_limit_gb == 0:
        # reads kept for later blocks and spare read memory can be dropped: they count as available
        from . import readbuffers, readcache
        return int(DEFAULT_FRACTION * (available_bytes() + readcache.held_bytes()
                                       + readbuffers.spare_bytes()))
    if not memory_limit_gb > 0:
        raise AlakazamError(f"memory_limit_gb: expected a number >= 0 (0 = auto), got {memory_limit_gb!r}")
    return int(memory_limit_gb * 1e9)


def bytes_per_row(n_chan: int, n_corr: int) -> int:
    """Working-set bytes per MS row of ``n_chan`` channels (correlations expanded to 4).

    ``n_chan * max(n_corr, 4) * BYTES_PER_SAMPLE + BYTES_PER_ROW_OVERHEAD``.
    """
    return int(max(n_chan, 1) * max(n_corr, 4) * BYTES_PER_SAMPLE + BYTES_PER_ROW_OVERHEAD)


def solve_bytes_per_row(n_chan: int, n_corr: int) -> int:
    """Solve-flow bytes per MS row of ``n_chan`` channels and ``n_corr`` stored correlations (read as
    stored: no expansion to 4): ``n_chan * n_corr * SOLVE_BYTES_PER_SAMPLE + BYTES_PER_ROW_OVERHEAD``."""
    return int(max(n_chan, 1) * max(n_corr, 1) * SOLVE_BYTES_PER_SAMPLE + BYTES_PER_ROW_OVERHEAD)


def plan_chunks(n_rows_total, bytes_per_row, rows_per_group, limit):
    """Choose the memory tier and the largest chunk.

    Parameters
    ----------
    n_rows_total : int
        Rows of the whole selection.
    bytes_per_row : int
        Working-set bytes per row (:func:`bytes_per_row`).
    rows_per_group : list of int
        Rows of each time bin (group read as a unit in tier 2).
    limit : int
        Memory limit in bytes (:func:`memory_limit_bytes`).

    Returns
    -------
    tier : int
        1 = everything fits (one read kept for all steps); 2 = the largest group fits (one read per
        group, a chunk is made of whole groups); 3 = chunks smaller than a group (running accumulator).
    max_rows : int
        Rows per chunk (>= 1).
    """
    bpr = max(int(bytes_per_row), 1)
    if n_rows_total * bpr <= limit:
        return 1, max(int(n_rows_total), 1)
    max_rows = max(1, int(limit // bpr))
    if max(rows_per_group or [0]) <= max_rows:
        return 2, max_rows
    return 3, max_rows


@contextlib.contextmanager
def small_pages():
    """Arrays allocated inside are not advised as transparent huge pages (numpy advises them for every
    large array).  For the solve's one large read of a (field, SPW) in memory tier 1 (GBs, filled
    once, kept for every step; the chunk reads of tiers 2/3 keep the default, their freed huge pages
    being reused at once; the apply's new chunk buffers use it too, core/readbuffers.py): on a
    machine whose RAM is full of page cache -- after reading a large MS -- the
    kernel compacts memory to find huge pages on the first touch, measured at 6-7 s of CPU for the
    3.13 GB first read of the 8.9 GB benchmark MS against 1.6-3.2 s with ordinary pages (and 0.95 s
    when free huge pages happened to exist).  Only the allocation policy changes, never a value."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:             # numpy < 2 or a build without it: nothing to change
        yield
        return
    prev = _set_madvise_hugepage(False)
    try:
        yield
    finally:
        _set_madvise_hugepage(prev)
