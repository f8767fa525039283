"""Which weights a solve uses: CASA's convention, SIGMA describes DATA, WEIGHT describes CORRECTED_DATA.

Convention (pinned by tests/test_solve_weights.py; measured with CASA 6.7.0-31 on a 5-antenna, 8-channel
simulated MS, noise 0.05 Jy; figures in that test module's docstring):

* **DATA** (the column the MS was written with) is weighted ``1 / SIGMA^2``.  When the MS has both
  WEIGHT_SPECTRUM and SIGMA_SPECTRUM (cells defined for the rows read) the per-channel
  ``1 / SIGMA_SPECTRUM^2``; otherwise the per-row ``1 / SIGMA^2``, broadcast over channels.  A
  SIGMA_SPECTRUM without a WEIGHT_SPECTRUM is not read (CASA gaincal ignores it: measured).  A SIGMA
  that is 0, negative or not finite gives weight 0 (the sample has no data; CASA flags the antenna's
  solution the same way).  WEIGHT and WEIGHT_SPECTRUM are **not read** for DATA: they describe the
  corrected data (``akapply(calwt=True)`` rewrites them, :mod:`alakazam.calibration.calwt`), so a
  WEIGHT of 0 does not mark a DATA sample unusable -- FLAG (or SIGMA <= 0) does.  CASA 6.7 gaincal
  gives solutions equal to 0.0 with WEIGHT of one antenna's rows 0 or divided by 100, all WEIGHT 0, or
  an all-zero WEIGHT_SPECTRUM; bandpass and gaincal K with WEIGHT 0 on one antenna's rows.
* **Any other column** (CORRECTED_DATA, or another data column a user solves from) is weighted by
  WEIGHT_SPECTRUM when the MS has it (cells defined), else WEIGHT broadcast over channels: WEIGHT is
  what describes corrected data (CASA's split datacolumn='corrected' writes the new SIGMA as
  ``1 / sqrt(WEIGHT)``, measured; datacolumn='data' keeps SIGMA and resets WEIGHT to ``1 / SIGMA^2``).
* Missing columns (SIGMA and WEIGHT are required in an MS; some converters omit one): without SIGMA,
  DATA is weighted as any other column; without WEIGHT and WEIGHT_SPECTRUM, any column by 1/SIGMA^2;
  with neither SIGMA nor WEIGHT (nor a WEIGHT_SPECTRUM) the read is an AlakazamError naming them.
* A weight read per row stays a (row, corr) array broadcast over channels (a read-only view): no
  (row, chan, corr) copy is made (issue 16).

:func:`read` is the one place that applies it (called by :func:`alakazam.core.ms_io._read_rows_by_number`);
:func:`describe` names the column for messages.
"""

from __future__ import annotations

import numpy as np

from .._numba import njit, threaded
from ..errors import AlakazamError

#: the largest float32: a 1/sigma^2 beyond it is no usable weight
_MAX32 = float(np.finfo(np.float32).max)

#: the data columns whose noise SIGMA (SIGMA_SPECTRUM) describes; every other column is described by WEIGHT
SIGMA_DESCRIBES = ("DATA",)


def uses_sigma(data_col) -> bool:
    """True when a solve from ``data_col`` is weighted by ``1 / SIGMA^2`` (module docstring)."""
    return str(data_col).upper() in SIGMA_DESCRIBES


def _from_sigma_col(data_col, cols) -> bool:
    """Whether a read of ``data_col`` takes its weights from SIGMA: DATA when the MS has SIGMA; any
    column when the MS has SIGMA but neither WEIGHT nor WEIGHT_SPECTRUM (module docstring)."""
    if "SIGMA" not in cols:
        return False
    return uses_sigma(data_col) or not ({"WEIGHT", "WEIGHT_SPECTRUM"} & cols)


def describe(data_col, cols) -> str:
    """For messages: the column(s) a solve from ``data_col`` reads its weights from, given the main
    table's column names ``cols`` (per-row cells are not checked: the column names alone)."""
    cols = set(cols)
    if _from_sigma_col(data_col, cols):
        if "WEIGHT_SPECTRUM" in cols and "SIGMA_SPECTRUM" in cols:
            return (f"SIGMA_SPECTRUM (weights 1/SIGMA_SPECTRUM^2 for {data_col}; WEIGHT describes "
                    "CORRECTED_DATA)")
        return f"SIGMA (weights 1/SIGMA^2 for {data_col}; WEIGHT describes CORRECTED_DATA)"
    if "WEIGHT_SPECTRUM" in cols:
        return "WEIGHT_SPECTRUM (read instead of WEIGHT when present)"
    return "WEIGHT"


def inv_sigma_sq(sigma):
    """float64 ``1 / sigma^2``, 0 where sigma is 0, negative, not finite or so small that 1/sigma^2
    exceeds float32 (the weight columns' type).  The rule of :func:`from_sigma`, also used by
    :mod:`alakazam.calibration.calwt` to derive WEIGHT from SIGMA."""
    x = np.array(sigma, np.float64, ndmin=1)
    good = np.isfinite(x) & (x > 0)
    with np.errstate(over="ignore", divide="ignore"):
        w = np.where(good, 1.0 / np.where(good, x, 1.0) ** 2, 0.0)
    w[~(w <= _MAX32)] = 0.0             # 1/sigma^2 beyond float32 (sigma < 1.1e-19): no usable weight
    return w.reshape(np.shape(sigma))


def from_sigma(sigma, out=None):
    """``1 / sigma^2`` as float32 by the rule of :func:`inv_sigma_sq` (computed in float64 per sample,
    the same values as ``inv_sigma_sq(sigma).astype(np.float32)``).  ``out``: a float32 array of
    sigma's shape to write into (may be ``sigma`` itself, a buffer of ours).  One threaded numba pass,
    no temporary (a per-row SIGMA of 121k rows: ~0.1 ms)."""
    s = np.asarray(sigma)
    if out is None or not out.flags.c_contiguous or out.dtype != np.float32:
        out = np.empty(s.shape, np.float32)
    flat_s = np.ascontiguousarray(s).reshape(-1)
    flat_o = out.reshape(-1)                 # a view: out is C-contiguous
    if flat_s.size:
        if flat_s.dtype != np.float32 and flat_s.dtype != np.float64:
            flat_s = flat_s.astype(np.float64)
        threaded(_inv_sq_kernel, min(flat_s.size // _PER_THREAD + 1, 64), flat_s, flat_o, _MAX32)
    return out


#: samples per thread below which one thread does the whole array
_PER_THREAD = 1 << 16


@njit
def _inv_sq_kernel(start, stride, s, out, max32):
    # contiguous blocks per thread; each element written once (_numba.threaded)
    n = s.shape[0]
    per = (n + stride - 1) // stride
    for i in range(start * per, min((start + 1) * per, n)):
        x = np.float64(s[i])
        if np.isfinite(x) and x > 0.0:
            w = 1.0 / (x * x)
            out[i] = w if w <= max32 else 0.0
        else:
            out[i] = 0.0


def read(data_col, cols, shape, spectrum, per_row, defined):
    """The (row, chan, corr) weights of a read of ``data_col`` (module docstring).

    cols : the main table's column names; shape : the data's (row, chan, corr) shape;
    spectrum(name) -> the (row, chan, corr) column ``name`` of the rows read (a new array or read
    buffer of ours), or None when its cells are undefined or of another shape;
    per_row(name) -> the (row, corr) column ``name``; defined(name) -> whether column ``name``'s cells
    are defined for the rows read (cheap: one cell).
    """
    cols = set(cols)
    if _from_sigma_col(data_col, cols):
        if "WEIGHT_SPECTRUM" in cols and "SIGMA_SPECTRUM" in cols and defined("WEIGHT_SPECTRUM"):
            s = spectrum("SIGMA_SPECTRUM")
            if s is not None:
                return from_sigma(s, out=s if s.dtype == np.float32 and s.flags.writeable else None)
        return _broadcast(from_sigma(per_row("SIGMA")), shape)
    if "WEIGHT_SPECTRUM" in cols:
        w = spectrum("WEIGHT_SPECTRUM")
        if w is not None:
            return w
    if "WEIGHT" not in cols:
        raise AlakazamError(f"vis: the MS has no usable weights for {data_col}: neither a SIGMA nor a "
                            "WEIGHT column (WEIGHT_SPECTRUM: "
                            + ("cells undefined)" if "WEIGHT_SPECTRUM" in cols else "absent)")
                            + "; a Measurement Set needs SIGMA and WEIGHT")
    return _broadcast(per_row("WEIGHT"), shape)


def _broadcast(w_row, shape):
    """(row, corr) weights as a read-only (row, chan, corr) view: no per-channel copy."""
    return np.broadcast_to(w_row[:, None, :], shape)
