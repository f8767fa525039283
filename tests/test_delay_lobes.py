"""K and KC on two narrow chunks far apart in the band: the delay on the true fringe lobe.

Channels 40-99 and 1950-2009 of 2048 x 97.66 kHz (a uGMRT-like selection around RFI) make fringe lobes
1 / (1910 channels) = 5.36 ns apart under an envelope 1 / (60 channels) wide; a lobe next to the true
one is lower by only 0.16%.  The fine FFT samples a lobe's top up to 1.5% low, so the compared lobes
(the 4 highest samples, parabola-interpolated) often missed the true one; the K hub fringes and their
least-squares combination then started antennas a lobe or a fraction of one off and the LM kept a local
minimum; KC's golden section searched +-21 ns (8 lobes) around the start and climbed a neighbour.  K
came out 5-600 ns off, KC one lobe off in every cell, unflagged (a review: 21.7 ns rms on a clean
16-antenna MS; each chunk alone pins the delay to ~16 ps).

Tolerances: noiseless fringes to 0.02 ns (as tests/test_delay_gap.py); noisy solves within 5 sigma of
the Cramer-Rao bound of the truth, sigma from the Fisher matrix 2 sum w |dV/dx|^2 of the model at the
true parameters (complex noise of variance 1/w): (phi_a, tau_a) of every antenna but the reference
for K, (tau, phi) for KC.  The bound (~0.03 ns for K at noise 3) is far below the lobe spacing, so a
lobe off fails by > 100 sigma."""

import importlib.util

import numpy as np
import pytest

from alakazam.sim.cells import make_batch
from alakazam.solvers import parallel_delay, solve

CHANS = np.r_[40:100, 1950:2010]
FREQ = 550e6 + 97656.25 * CHANS
LOBE = 1e9 / (1910 * 97656.25)          # ns
FEEDS = ["linear", "circular"]
BACKENDS = [b for b in ("numba", "scipy") if importlib.util.find_spec(b) is not None]
N_ANT = 8


def test_fringe_fft_takes_the_highest_lobe():
    """Noiseless fringes over +-200 ns on the two chunks: the true delay to 0.02 ns (3 of 200 were a
    lobe off)."""
    tau = np.random.default_rng(1).uniform(-200.0, 200.0, 200)
    y = np.exp(2j * np.pi * tau[:, None] * 1e-9 * FREQ[None, :])
    t, amp = parallel_delay.fringe_fft(y, FREQ, np.ones(len(FREQ), bool))
    assert np.abs(t - tau).max() < 0.02, (t - tau)[np.abs(t - tau) > 0.02]
    np.testing.assert_allclose(amp, len(FREQ), rtol=1e-9)          # the exact top, not a sample


def _k_sigma(b, tr, c, p):
    """CRB sigma (ns) of the delays of antennas 1.. (reference 0) in cell c, hand p."""
    corr = (0, 3)[p]
    J = tr["J"][c]
    a1, a2 = b.ant1, b.ant2
    M = b.model[c].reshape(len(a1), -1, 2, 2)
    V = np.einsum("bsij,bsjk,bslk->bsil", J[a1], M, np.conj(J[a2])).reshape(len(a1), -1, 4)[..., corr]
    w = b.weight[c][..., corr]
    kap = 2 * np.pi * 1e-9 * (b.freq[c] - b.freq[c].mean())
    F = np.zeros((2 * (N_ANT - 1), 2 * (N_ANT - 1)))
    for bl in range(len(a1)):
        s = np.zeros((2 * (N_ANT - 1), len(kap)))
        for ant, sign in ((a1[bl], 1), (a2[bl], -1)):
            if ant:
                s[2 * (ant - 1)] = sign
                s[2 * (ant - 1) + 1] = -sign * kap
        F += 2 * (s * (w[bl] * np.abs(V[bl]) ** 2)) @ s.T
    return np.sqrt(np.diag(np.linalg.inv(F)))[1::2]


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("noise", [0.3, 3.0])
def test_k_on_two_distant_chunks(feed, backend, noise):
    """K, delays over +-100 ns: every antenna within 5 CRB sigma of the truth.  At noise 3 one baseline
    alone leaves the lobes undecided (2.6 ns on a 5.36 ns spacing), an antenna's 7 baselines do not."""
    b, tr = make_batch("K", n_cell=2, n_ant=N_ANT, n_samp=len(FREQ), freq=FREQ, feed=feed, noise=noise,
                       seed=3, tau_scale=100.0)
    r = solve("K", b, backend=backend)
    err = r.delay - (tr["tau"] - tr["tau"][:, [0]])
    assert np.abs(err[:, 0]).max() == 0
    for c in range(b.n_cell):
        for p in range(2):
            sig = _k_sigma(b, tr, c, p)
            assert sig.max() < 0.05 * LOBE
            z = err[c, 1:, p] / sig
            assert np.all(np.abs(z) < 5), (err[c, 1:, p] / LOBE, z)


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_kc_on_two_distant_chunks(feed, backend):
    """KC noiseless to 1e-8 ns, and at noise 0.3 within 5 CRB sigma (it was one lobe off in every cell)."""
    b, tr = make_batch("KC", n_cell=6, n_ant=5, n_samp=len(FREQ), freq=FREQ, feed=feed, seed=9)
    r = solve("KC", b, backend=backend)
    assert np.abs(r.params[:, 0] - tr["tau"]).max() < 1e-8, (r.params[:, 0] - tr["tau"]) / LOBE
    b, tr = make_batch("KC", n_cell=6, n_ant=5, n_samp=len(FREQ), freq=FREQ, feed=feed, noise=0.3,
                       seed=10)
    r = solve("KC", b, backend=backend)
    kap = 2 * np.pi * 1e-9 * (FREQ - FREQ.mean())
    for c in range(b.n_cell):
        h = (b.weight[c][..., 1:3] * np.abs(b.model[c][..., 1:3]) ** 2).sum(axis=(0, 2))    # (n_samp,)
        F = 2 * np.array([[np.sum(h * kap ** 2), np.sum(h * kap)], [np.sum(h * kap), np.sum(h)]])
        sig = np.sqrt(np.linalg.inv(F)[0, 0])
        assert sig < 0.05 * LOBE
        err = r.params[c, 0] - tr["tau"][c]
        assert abs(err) < 5 * sig, (err / LOBE, err / sig)
