"""akfluxscale's reference / transfer take field names, patterns and field ids, as CASA fluxscale's
(calibration/fluxscale.named_fields).

Patterns (``'3C2*'``) are matched against the fields with solutions of the key; ids (``'0'``,
``'0~1'``) are rows of the transfer MS's FIELD table.  Before, only names were accepted ("'0' has no
G0 solutions").  Every spelling gives the same fluxes as the names; an id or pattern that matches
nothing is still an error naming the parameter.
"""

import textwrap

import numpy as np

import pytest
from casacore.tables import table

from alakazam.caltasks import akfluxscale
from alakazam.cli import main
from alakazam.config import solve_config_from_dict
from alakazam.errors import ParameterError
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    d = tmp_path_factory.mktemp("fsfields")
    ms, cal = str(d / "s.ms"), str(d / "cal.h5")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(8,), duration_h=0.5, int_s=120.0, noise=0.02, seed=4,
                leakage=False, dead_ant=False)
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones=["G"],
                                          field=[["3C286", "3C147"]], time_interval=["inf"], quiet=True)))
    with table(ms + "/FIELD", ack=False) as t:
        names = list(t.getcol("NAME"))
    return ms, cal, names


def _flux(r):
    return [r[k]["0"]["fluxd"][0] for k in sorted(k for k in r if k.isdigit())]


def test_patterns_and_ids_as_names(solved, tmp_path):
    ms, cal, names = solved
    i286, i147 = names.index("3C286"), names.index("3C147")
    by_name = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "a.h5"), reference=["3C286"],
                          transfer=["3C147"], jones="G0")
    for ref, tr in ((["3C2*"], ["3C1*"]), ([str(i286)], [str(i147)]), ([str(i286)], [])):
        r = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "b.h5"), reference=ref, transfer=tr,
                        jones="G0")
        assert sorted(k for k in r if k.isdigit()) == sorted(k for k in by_name if k.isdigit())
        assert _flux(r) == _flux(by_name)


def test_unmatched_id_or_pattern_is_an_error(solved, tmp_path):
    ms, cal, names = solved
    for ref in (["9"], ["NGC*"]):
        with pytest.raises(ParameterError, match="reference"):
            akfluxscale(caltable=cal, fluxtable=str(tmp_path / "c.h5"), reference=ref, transfer=["3C147"],
                        jones="G0")
    assert not (tmp_path / "c.h5").exists()


def _solve_then_fluxscale(y, ms, tmp_path, reference, transfer):
    """Write YAML ``y``: a G solve of 3C286 + 3C147 on ``ms`` into cal.h5, then a fluxscale block with
    the given reference_field / transfer_field (YAML flow lists) reading it."""
    y.write_text(textwrap.dedent(f"""
        solve:
          - {{ms: {ms}, output: {tmp_path}/cal.h5, ref_ant: C00, jones: [G], field: [[3C286, 3C147]],
              time_interval: [inf]}}
        fluxscale:
          - {{reference_table: {tmp_path}/cal.h5, reference_field: {reference},
              transfer_field: {transfer}, output: {tmp_path}/s.h5, jones_type: G0}}
    """))


def test_yaml_pattern_with_a_planned_table(solved, tmp_path):
    ms, _, _ = solved
    y = tmp_path / "p.yaml"
    _solve_then_fluxscale(y, ms, tmp_path, "['3C2*']", "['3C1*']")
    assert main(["--quiet", "run", str(y)]) == 0
    y.write_text(y.read_text().replace("'3C2*'", "'NGC*'"))
    assert main(["--quiet", "run", str(y)]) == 2         # a pattern that matches nothing: the preflight


def test_casa_field_strings(solved, tmp_path):
    """CASA fluxscale's strings (a second review, measured with CASA 6.7): ``transfer='1,2'`` (ids),
    ``reference='>0'`` style id syntax and ``'3C147,TARGET'`` (names) select those fields; a field
    whose name looks like an id is ``'"2"'``; an id that is no FIELD row is an error saying so."""
    ms, cal, names = solved
    i286, i147 = names.index("3C286"), names.index("3C147")
    by_name = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "a.h5"), reference=["3C286"],
                          transfer=["3C147"], jones="G0")
    r = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "b.h5"), reference=f"{i286}",
                    transfer=f"3C147,{i147}", jones="G0")
    assert _flux(r) == _flux(by_name)
    r = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "c.h5"), reference=['"3C286"'],
                    transfer=[f"{i147}~{i147}"], jones="G0")
    assert _flux(r) == _flux(by_name)
    with pytest.raises(ParameterError, match="'9' is CASA id syntax and selects no row of the FIELD table"):
        akfluxscale(caltable=cal, fluxtable=str(tmp_path / "d.h5"), reference=["9"], transfer=["3C147"],
                    jones="G0")


def test_yaml_field_ids_with_a_planned_table(solved, tmp_path, capsys):
    """Field ids of a fluxscale block whose table the solve block writes are checked in the preflight,
    through the solve block's MS (a second review: '7' passed, the solve ran, then the block failed)."""
    ms, _, names = solved
    y = tmp_path / "i.yaml"
    _solve_then_fluxscale(y, ms, tmp_path, "['7']", f"['{names.index('TARGET')}']")
    assert main(["--quiet", "run", str(y)]) == 2
    err = capsys.readouterr().err
    assert "fluxscale[0].reference_field" in err and "'7' is CASA id syntax" in err
    assert "fluxscale[0].transfer_field" in err and "'TARGET' has no G0 solutions" in err
    assert not (tmp_path / "cal.h5").exists()              # nothing ran
    y.write_text(y.read_text().replace("['7']", f"['{names.index('3C286')}']").replace(
        f"['{names.index('TARGET')}']", f"['{names.index('3C147')}']"))
    assert main(["--quiet", "run", str(y)]) == 0, capsys.readouterr().err


def test_fields_named_like_ids(solved, tmp_path):
    """Fields named "1" (3C286's row) and "0" (3C147's): the model flux is read from the field of that
    name, not from the row whose id the name looks like (a second review: since id syntax became ids,
    fluxscale read 3C286's model for "0" and returned 37 Jy where CASA 6.7 gives 2.46)."""
    import shutil

    ms0, cal0, names = solved
    ms, cal = str(tmp_path / "n.ms"), str(tmp_path / "n.h5")
    shutil.copytree(ms0, ms)
    i286, i147 = names.index("3C286"), names.index("3C147")
    with table(ms + "/FIELD", ack=False, readonly=False) as t:
        t.putcell("NAME", i286, str(i147))           # 3C286 now named like 3C147's id, and vice versa
        t.putcell("NAME", i147, str(i286))
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones=["G"],
                                          field=[[f'"{i147}"', f'"{i286}"']], time_interval=["inf"],
                                          quiet=True)))
    by_name = akfluxscale(caltable=cal0, fluxtable=str(tmp_path / "a.h5"), reference=["3C286"],
                          transfer=["3C147"], jones="G0")
    r = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "b.h5"), reference=[f'"{i147}"'],
                    transfer=[f'"{i286}"'], jones="G0")
    assert [k for k in r if k.isdigit()] == [str(i147)]        # 3C147's row
    np.testing.assert_allclose(_flux(r), _flux(by_name), rtol=1e-6)


def test_quoted_pattern_and_unreadable_ms(solved, tmp_path):
    """A quoted pattern is a pattern (CASA 6.7's fluxscale and msseltoindex: '"3C2*"'); field ids
    when the transfer MS cannot be found say so (a second review: "'0' has no G0 solutions")."""
    import shutil

    from alakazam.core.selection import parse_fields

    ms, cal, names = solved
    assert parse_fields('"3C2*"', names) == [names.index("3C286")]
    by_name = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "a.h5"), reference=["3C286"],
                          transfer=["3C147"], jones="G0")
    r = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "b.h5"), reference=['"3C2*"'],
                    transfer=["3C147"], jones="G0")
    assert _flux(r) == _flux(by_name)
    lone = str(tmp_path / "lone.h5")                     # the table alone: its recorded MS elsewhere
    shutil.copy(cal, lone)
    import h5py

    with h5py.File(lone, "r+") as f:                      # record an MS that does not exist
        def re_ms(name, obj):
            if "ms" in obj.attrs:
                obj.attrs["ms"] = str(tmp_path / "gone.ms")
        f.visititems(re_ms)
    with pytest.raises(ParameterError, match="'0' is CASA id syntax.*not readable"):
        akfluxscale(caltable=lone, fluxtable=str(tmp_path / "c.h5"), reference=["0"], transfer=["3C147"],
                    jones="G0")


def test_yaml_field_ids_with_a_multi_ms_solve(solved, tmp_path, capsys):
    """A solve block over a list of MSs: the fluxscale block's ids are checked against the first MS's
    FIELD table in the preflight (a second review: only a single-MS block's were)."""
    ms, _, names = solved
    y = tmp_path / "m.yaml"
    _solve_then_fluxscale(y, f"[{ms}]", tmp_path, "['9']", "[3C147]")
    assert main(["--quiet", "run", str(y)]) == 2
    assert "'9' is CASA id syntax" in capsys.readouterr().err
    assert not (tmp_path / "cal.h5").exists()
