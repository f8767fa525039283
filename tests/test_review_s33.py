"""Session 33's hostile reviews: the fixes that have no better home."""

import pytest

from alakazam.errors import ParameterError


def test_a_field_list_of_another_length_than_jones_says_how_to_give_several_fields(sim_linear, tmp_path):
    """akcal's field list is one selection per step (YAML's flat list is one for every step): a list of
    another length than jones names the one-string form, which the error did not."""
    from alakazam.caltasks import akcal

    ms, _ = sim_linear
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=str(tmp_path / "x.h5"), field=["3C286", "3C147"], jones=["G"], refant="C00")
    msg = str(e.value)
    assert "field: has 2 entries but jones has 1 steps" in msg and "field='3C286,3C147'" in msg
    assert not (tmp_path / "x.h5").exists()
