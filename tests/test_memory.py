"""Memory tier decisions."""

import pytest

from alakazam.core import memory
from alakazam.errors import AlakazamError


def test_limit_default_is_40_percent(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10_000_000_000)
    assert memory.memory_limit_bytes(0) == 4_000_000_000
    assert memory.memory_limit_bytes(2.5) == 2_500_000_000
    with pytest.raises(AlakazamError, match="memory_limit_gb"):
        memory.memory_limit_bytes(-1)
    assert memory.available_bytes() > 0


def test_bytes_per_row_counts_working_copies():
    # 2 channels x 4 corr x (8+8 read + 16+16 complex128 copies + 4+8 weights + 2 flags) + overhead
    assert memory.bytes_per_row(2, 4) == 2 * 4 * 62 + 64
    assert memory.bytes_per_row(2, 2) == memory.bytes_per_row(2, 4)    # expanded to 4 corr


@pytest.mark.parametrize("limit, tier, max_rows", [
    (1000 * 100, 1, 1000),        # all 1000 rows fit exactly
    (400 * 100, 2, 400),          # largest bin (300 rows) fits
    (300 * 100, 2, 300),          # boundary: largest bin exactly
    (299 * 100, 3, 299),          # one bin exceeds -> sub-bin chunks
    (50, 3, 1),                   # absurdly small: at least one row
])
def test_plan_chunks_tiers(limit, tier, max_rows):
    rows_per_bin = [200, 300, 250, 250]
    # 1000 rows x 100 B = 1e5 B in total; limit // 100 = rows per chunk
    assert memory.plan_chunks(1000, 100, rows_per_bin, limit) == (tier, max_rows)
