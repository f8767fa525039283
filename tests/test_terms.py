"""The Jones-type registry (alakazam/jones/terms.py): its conventions, and that the modules that used
to keep their own tables now read it (docs/conventions.md, docs/architecture.md)."""

import numpy as np
import pytest

from alakazam.errors import AlakazamError
from alakazam.jones import terms


def test_rime_order_and_matrix_forms():
    """J = [K G T KC CP] D P: every diagonal type comes before every full one."""
    by_place = sorted(terms.REGISTRY.values(), key=lambda t: t.rime_order)
    assert [t.name for t in by_place] == ["K", "G", "T", "KC", "CP", "D"]
    forms = [t.matrix_form for t in by_place]
    assert forms == sorted(forms, key=lambda f: f != "diagonal")
    assert {t.name for t in by_place if not t.diagonal} == {"D"}
    assert terms.names() == ("K", "G", "T", "D", "KC", "CP")      # cal-table listing order


def test_correlations_sampling_and_reference():
    get = terms.get
    assert get("K").corr == get("G").corr == get("T").corr == (0, 3)
    assert get("D").corr == (0, 1, 2, 3)
    assert get("KC").corr == get("CP").corr == (1, 2)
    assert [n for n in terms.names() if get(n).channel_sampled] == ["K", "KC"]
    assert [n for n in terms.names() if get(n).scan_sampled] == ["D", "KC", "CP"]
    assert [n for n in terms.names() if get(n).is_global] == ["KC", "CP"]
    assert [n for n in terms.names() if get(n).cross_only] == ["KC", "CP"]
    assert {n: get(n).phase_ref for n in terms.names()} == {
        "K": "delay", "G": "phase", "T": "phase", "D": "leakage", "KC": None, "CP": None}
    assert [n for n in terms.names() if get(n).freq == "delay"] == ["K", "KC"]
    assert get("K").delay_pols == 2 and get("KC").delay_pols == 1
    assert [n for n in terms.names() if get(n).gain] == ["G", "T"]


def test_parameter_counts():
    """Free real parameters of a cell (the SNR's DOF): per antenna less the reference's."""
    n = np.array([5])
    assert terms.get("K").n_params(n)[0] == 16
    assert terms.get("G").n_params(n)[0] == 18 and terms.get("G").n_params(n, phase_only=True)[0] == 8
    assert terms.get("T").n_params(n)[0] == 9 and terms.get("T").n_params(n, phase_only=True)[0] == 4
    assert terms.get("D").n_params(n)[0] == 18
    assert terms.get("KC").n_params(n)[0] == 2 and terms.get("CP").n_params(n)[0] == 1


def test_casa_viscal_names():
    v = {n: terms.get(n).viscal(1) for n in terms.names()}
    assert v == {"K": "K Jones", "G": "G Jones", "T": "T Jones", "D": "Df Jones", "KC": "Kcross Jones",
                 "CP": "Xf Jones"}
    assert terms.get("G").viscal(16) == "B Jones" and terms.get("T").viscal(16) == "T Jones"
    # a CASA T table is read as a G with p = q (it applies under every key a G does)
    assert terms.from_viscal("t jones") == "G" and terms.from_viscal("B JONES") == "G"
    assert terms.from_viscal("Df Jones") == terms.from_viscal("D Jones") == "D"
    assert terms.from_viscal("Xf Jones") == "CP" and terms.from_viscal("nope") is None


def test_unknown_type_and_key_pattern():
    with pytest.raises(AlakazamError, match="unknown Jones type 'Q'.*K, G, T, D, KC, CP"):
        terms.get("Q")
    import re

    rx = re.compile(rf"^({terms.key_pattern()})(\d+)$")
    assert rx.match("KC0").group(1) == "KC" and rx.match("T3").group(1) == "T"
    with pytest.raises(AttributeError):
        terms.get("G").name = "X"                          # frozen


def test_every_solver_module_has_the_interface():
    for n in terms.names():
        mod = terms.get(n).module
        for f in ("initial_guess", "to_jones", "model_vis"):
            assert callable(getattr(mod, f)), (n, f)
        assert hasattr(mod, "solve_numba") or hasattr(mod, "solve_with"), n


def test_modules_read_the_registry():
    """The tables other modules used to keep are the registry's."""
    from alakazam import config, solvers
    from alakazam.calibration import chain, solve_order
    from alakazam.io import casatable, hdf5

    assert config.JONES_TYPES == solvers.JONES_TYPES == hdf5.TYPE_ORDER == terms.names()
    assert chain.DIAGONAL_TYPES == ("K", "G", "T", "KC", "CP")
    assert solve_order.CROSS_TYPES == ("KC", "CP")
    assert casatable.viscal_for("T", 1) == "T Jones" and casatable.viscal_for("G", 4) == "B Jones"
    assert casatable.VISCAL_TO_TYPE["t jones"] == "G"
    assert hdf5._KEY_RE.match("T0") and hdf5._KEY_RE.match("KC12").group(1) == "KC"
