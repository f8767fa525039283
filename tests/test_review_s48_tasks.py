"""Session 48's hostile review of the task interface: CASA's comma-separated field string in akapply, the
place of a bad field in its selection."""

import shutil

import pytest

from alakazam.caltasks import akapply, akcal
from alakazam.errors import ParameterError


@pytest.fixture
def chain(small_chain_table, tmp_path):
    ms, cal, _ = small_chain_table
    shutil.copytree(ms, tmp_path / "sim.ms")
    return str(tmp_path / "sim.ms"), cal


def test_akapply_takes_casas_comma_separated_field_string(chain):
    """applycal(field='3C286,3C147') selects two fields; akapply refused it as one field named
    '3C286,3C147' ('item 0 is not a field name ... or one comma-separated string for every step')."""
    ms, cal = chain
    r = akapply(vis=ms, field="3C286,3C147", gaintable=[cal], jones=["K0"])
    assert set(r["flagged_by_term"]) == {"K0/3C286", "K0/3C147"}        # both fields, not TARGET
    with pytest.raises(ParameterError) as e:
        akapply(vis=ms, field="3C286,NOPE", gaintable=[cal], jones=["K0"])
    assert "'NOPE' (item 1) is not a field name" in str(e.value)


@pytest.mark.parametrize("task", ["akapply", "akcal"])
def test_a_bad_field_is_named_with_its_place_in_the_selection(chain, tmp_path, task):
    """'(item N)' was always 0: each item is checked alone."""
    ms, cal = chain
    with pytest.raises(ParameterError) as e:
        if task == "akapply":
            akapply(vis=ms, field=["3C286", "NOPE", "BAR"], gaintable=[cal], jones=["K0"])
        else:
            akcal(vis=ms, caltable=str(tmp_path / "x.h5"), field="3C286,NOPE,BAR", jones=["G"])
    msg = str(e.value)
    assert "'NOPE' (item 1)" in msg and "'BAR' (item 2)" in msg, msg
