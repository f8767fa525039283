"""``alakazam simulate --overwrite`` replaces the MS and its ``<ms>.flagversions`` (core/outputs.py).

The versions are the old MS's flags: kept, the new MS listed them and a restore wrote the other MS's
flags into it without a word.  A ``.flagversions`` left without its MS is refused (it is not ours to
delete, and it is not the new MS's history).
"""

import os

import pytest

from alakazam.core import flagversions
from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms

SMALL = dict(n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.1, int_s=60.0, scan_len_s=180.0,
             dead_ant=False)


def test_overwrite_takes_the_flag_versions_with_it(tmp_path):
    ms = str(tmp_path / "o.ms")
    simulate_ms(ms, seed=0, **SMALL)
    flagversions.save(ms, "akflag", "flags of the first MS", name="old_ms_flags")
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["old_ms_flags"]
    simulate_ms(ms, seed=5, overwrite=True, **SMALL)
    assert not os.path.exists(ms + ".flagversions")        # the old versions went with the old MS
    assert flagversions.list_versions(ms) == []


def test_flagversions_without_their_ms_refused(tmp_path):
    ms = str(tmp_path / "o.ms")
    os.makedirs(ms + ".flagversions")
    marker = os.path.join(ms + ".flagversions", "FLAG_VERSION_LIST")
    with open(marker, "w") as f:
        f.write("akflag_1 : from another MS\n")
    for ow in (False, True):
        with pytest.raises(AlakazamError, match="flagversions.*without its Measurement Set"):
            simulate_ms(ms, seed=0, overwrite=ow, **SMALL)
    assert not os.path.exists(ms) and os.path.isfile(marker)   # nothing written, nothing removed


def test_interrupted_replacement_can_be_rerun(tmp_path, monkeypatch):
    """Ctrl-C between the two removals leaves the MS (its flag versions go first), so the same
    command runs again (a review: the MS went first, and the re-run was refused for a
    .flagversions without its MS)."""
    import shutil

    ms = str(tmp_path / "o.ms")
    simulate_ms(ms, seed=0, **SMALL)
    flagversions.save(ms, "akflag", "", name="v1")
    real = shutil.rmtree
    calls = []

    def rmtree_then_interrupt(path, *a, **k):
        real(path, *a, **k)
        calls.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", rmtree_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        simulate_ms(ms, seed=5, overwrite=True, **SMALL)
    monkeypatch.setattr(shutil, "rmtree", real)
    # (since session 48 the old MS and its flag versions are moved aside and removed after the new pair
    # is in place: the interrupt lands in that removal)
    assert len(calls) == 1 and calls[0].endswith(".flagversions") and os.path.isdir(ms)
    simulate_ms(ms, seed=5, overwrite=True, **SMALL)             # the re-run finishes the job
    assert os.path.isdir(ms) and not os.path.exists(ms + ".flagversions")
