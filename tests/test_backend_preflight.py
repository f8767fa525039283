"""A solver backend whose package is missing or broken is a parameter error before anything runs
(alakazam/solvers.check_package via alakazam/solve_precheck.py): in akcal (named by its parameter,
``solver``) and in every block of a YAML file.  Review 55b: jax without jaxlib passed the check (only
``find_spec``) and failed as an "internal error" after the data were read; a later YAML block's missing
backend was found only after the earlier blocks had run and written their tables."""

import os

import pytest

from alakazam import solvers
from alakazam.errors import BackendUnavailableError, ParameterError
from alakazam.sim import simulate_ms


@pytest.fixture
def broken_jax(tmp_path, monkeypatch):
    """The jax backend's package replaced by one that is installed but does not import."""
    pkg = tmp_path / "site" / "broken_jax_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ModuleNotFoundError('jax requires jaxlib to be installed.')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    mod, _, pip = solvers.BACKENDS["jax"]
    monkeypatch.setitem(solvers.BACKENDS, "jax", (mod, "broken_jax_pkg", pip))
    return "broken_jax_pkg"


@pytest.fixture(scope="module")
def ms(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("preflight") / "t.ms")
    simulate_ms(path, n_ant=5, n_chan=(4,), duration_h=0.5, int_s=120.0, leakage=False)
    return path


def test_broken_package_is_named_by_the_backend_check(broken_jax):
    with pytest.raises(BackendUnavailableError, match="installed but does not import .*jaxlib"):
        solvers.check_backend("jax")
    assert "pip install 'alakazam[jax]'" in str(pytest.raises(BackendUnavailableError,
                                                              solvers.check_package, "jax").value)


def test_akcal_names_its_solver_parameter_before_reading(broken_jax, ms, tmp_path):
    from alakazam.caltasks import akcal

    out = str(tmp_path / "c.h5")
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=out, jones=["G"], solint=["inf"], refant="C00", solver="jax")
    assert "solver" in e.value.errors and "does not import" in " ".join(e.value.errors["solver"])
    assert "solver_backend" not in e.value.errors
    assert not os.path.exists(out)


def test_yaml_later_block_checked_before_the_first_runs(broken_jax, ms, tmp_path):
    from alakazam.caltasks.yamlrun import run_yaml

    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"solve:\n  - ms: {ms}\n    output: {a}\n    jones: [G]\n    ref_ant: C00\n"
                   f"  - ms: {ms}\n    output: {b}\n    jones: [G]\n    ref_ant: C00\n"
                   "    solver_backend: jax\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(cfg))
    assert "solve[1].solver_backend" in e.value.errors
    assert not os.path.exists(a) and not os.path.exists(b)
