"""Shared fixtures: small simulated Measurement Sets with known truth."""

import pytest

from alakazam.sim import simulate_ms


@pytest.fixture(scope="session")
def sim_linear(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim_linear")
    ms = str(d / "sim.ms")
    return ms, simulate_ms(ms, feed="linear", noise=0.05, seed=1, leakage=False, n_chan=(32, 16))


@pytest.fixture(scope="session")
def sim_circular(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim_circular")
    ms = str(d / "sim.ms")
    return ms, simulate_ms(ms, feed="circular", noise=0.05, seed=2, leakage=False, n_chan=(32, 16))
