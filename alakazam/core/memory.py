"""Memory planning for the solve and apply flows (three tiers of SEED.md)."""

import psutil

#: bytes per visibility sample held while a chunk is processed: data and model as read
#: (complex64, 8 B each), their complex128 working copies after corrections (16 B each),
#: weight (float32 as read + float64 working, 12 B) and flags (2 x 1 B)
BYTES_PER_SAMPLE = 8 + 8 + 16 + 16 + 12 + 2


def available_bytes() -> int:
    return int(psutil.virtual_memory().available)


def memory_limit_bytes(memory_limit_gb: float) -> int:
    """``memory_limit_gb`` in bytes; 0 (or less) = 40% of the available RAM."""
    if memory_limit_gb and memory_limit_gb > 0:
        return int(memory_limit_gb * 1e9)
    return int(0.4 * available_bytes())


def bytes_per_row(n_chan: int, n_corr: int) -> int:
    """Working-set bytes per MS row of ``n_chan`` channels (4 correlations after expansion)."""
    return int(max(n_chan, 1) * max(n_corr, 4) * BYTES_PER_SAMPLE + 64)


def plan_chunks(n_rows_total, bytes_per_row, rows_per_group, limit):
    """(tier, max_rows): 1 = everything fits (one read kept for all steps); 2 = the largest group
    fits (one read per group); 3 = chunks smaller than a group (running accumulator)."""
    bpr = max(int(bytes_per_row), 1)
    if n_rows_total * bpr <= limit:
        return 1, max(int(n_rows_total), 1)
    max_rows = max(1, int(limit // bpr))
    if max(rows_per_group or [0]) <= max_rows:
        return 2, max_rows
    return 3, max_rows
