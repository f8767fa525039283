"""CASA ``smodel``: a Stokes [I, Q, U, V] point source at the phase centre as the solve's model.

Conventions (pinned by tests/test_solve_params.py):

* ``smodel`` = ``[I, Q, U, V]`` in Jy (``[I]`` = unpolarised); ``[]`` (default) = the model column
  (MODEL_DATA).  Given, it replaces the model column for every field of the block (MODEL_DATA is then
  neither read nor needed), as CASA's gaincal ``smodel``.
* The visibilities are those the simulator writes into MODEL_DATA (alakazam.sim.simulate._brightness),
  the same on every baseline and channel:
  linear feeds XX = I + Q, XY = U + iV, YX = U - iV, YY = I - Q;
  circular RR = I + V, RL = Q + iU, LR = Q - iU, LL = I - V.
* Like MODEL_DATA it is in the sky frame: with ``parang`` / ``apply_parang`` the solve rotates it by
  the parallactic angle exactly as it rotates MODEL_DATA (:func:`alakazam.calibration.chain.preapply_tables`).
"""

from __future__ import annotations

import numpy as np

from ..errors import AlakazamError

_INDEX = {"XX": (0, 0), "XY": (0, 1), "YX": (1, 0), "YY": (1, 1),
          "RR": (0, 0), "RL": (0, 1), "LR": (1, 0), "LL": (1, 1)}


def parse_smodel(value, where="smodel"):
    """[] / None -> [] (use the model column); [I] or [I, Q, U, V] -> 4 floats; else an error."""
    if value in (None, "", [], ()):
        return []
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(vals) not in (1, 4) or any(isinstance(x, bool) or not isinstance(x, (int, float)) or
                                      not np.isfinite(x) for x in vals):
        raise AlakazamError(f"{where}: {value!r} must be [I, Q, U, V] (Jy; or [I]) of finite numbers, or [] "
                            "for the model column")
    vals = [float(x) for x in vals] + [0.0] * (4 - len(vals))
    if vals[0] <= 0:
        raise AlakazamError(f"{where}: {value!r}: Stokes I must be > 0")
    return vals


def correlations(stokes, corr_types):
    """Model visibility of each correlation (n_corr,) complex128."""
    i, q, u, v = stokes
    lin = corr_types[0] in ("XX", "XY", "YX", "YY")
    b = (np.array([[i + q, u + 1j * v], [u - 1j * v, i - q]]) if lin else
         np.array([[i + v, q + 1j * u], [q - 1j * u, i - v]]))
    return np.array([b[_INDEX[c]] for c in corr_types], np.complex128)


def model_like(data, corr_types, stokes):
    """A model array with the shape and dtype of ``data`` (row, chan, corr native order)."""
    vals = correlations(stokes, corr_types).astype(data.dtype)
    return np.broadcast_to(vals, data.shape).copy()
