"""averaging.diag_inverse: one numba pass with the same bits as the numpy definition (issue 16)."""

import numpy as np

from alakazam.core import averaging


def numpy_definition(diag):
    # the definition the kernel replaces (the code of averaging.diag_inverse before issue 16's change)
    diag = np.asarray(diag, np.complex128)
    bad = ~np.isfinite(diag) | (diag == 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ginv = np.where(bad, 0, 1.0 / np.where(bad, 1, diag))
    bad |= ~np.isfinite(ginv)
    ginv[bad] = 0
    return ginv, bad


def hostile_values(rng, n):
    mag = 10.0 ** rng.uniform(-320, 308, n)          # subnormal to near overflow
    z = mag * np.exp(1j * rng.uniform(-np.pi, np.pi, n))
    special = np.array([0, -0.0, 1, -1, 1j, -1j, 1 + 1j, 1 - 1j, -1 - 1j, np.nan, np.inf, -np.inf,
                        complex(np.nan, 1), complex(1, np.inf), complex(0, 0.0), 5e-324, 5e-324j,
                        1e308 + 1e308j, 1e-308 + 1e-308j, 3 + 3j, -2 + 2j, 1e-200 + 1e200j], complex)
    return np.concatenate([z, special, rng.normal(size=n) + 1j * rng.normal(size=n)])


def test_same_bits_as_numpy():
    rng = np.random.default_rng(4)
    z = hostile_values(rng, 50_000)
    diag = np.resize(z, (7, 5, 2 * len(z) // 70 + 1, 2))
    ginv, bad = averaging.diag_inverse(diag)
    ref_inv, ref_bad = numpy_definition(diag)
    assert ginv.dtype == np.complex128 and bad.dtype == np.bool_ and ginv.shape == diag.shape
    assert np.array_equal(bad, ref_bad)
    # bit for bit, signed zeros included
    assert np.array_equal(ginv.view(np.uint64), ref_inv.view(np.uint64))
    assert bad.any() and (~bad).any()


def test_complex64_input_and_empty():
    g = (np.random.default_rng(1).normal(size=(3, 4, 6, 2)) + 1j).astype(np.complex64)
    ginv, bad = averaging.diag_inverse(g)
    ref_inv, ref_bad = numpy_definition(g)
    assert np.array_equal(ginv.view(np.uint64), ref_inv.view(np.uint64)) and not bad.any()
    e_inv, e_bad = averaging.diag_inverse(np.zeros((0, 1, 1, 2), np.complex128))
    assert e_inv.shape == (0, 1, 1, 2) and e_bad.shape == (0, 1, 1, 2)
