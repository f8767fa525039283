"""The value a flagging mode examines: CASA's VisMapper expression of ``correlation`` (flagdata's).

``ABS_`` (and no prefix) |V|, ``REAL_`` Re V, ``IMAG_`` Im V, ``ARG_`` the phase in radians (-pi..pi],
``NORM_`` |V|^2 (casacore's norm); the first prefix given serves the whole list ('REAL_XX,YY': the real
part of both).  Modes clip and tfcrop examine it (CASA 6.7 flagdata measured: clip, session 39; tfcrop,
session 55 -- 'REAL_XY' flagged 51,883 samples per correlation where 'XY' flagged 28,932, and akflag's
tfcrop examined |V| for every prefix until then).  CASA's rflag ignores the prefix (measured: 'REAL_XY'
gives 'XY''s flags) and so does akflag's: rflag works on the complex visibilities.  The other modes
refuse a prefix (flagging/config.py).
"""

import numpy as np

PREFIXES = ("ABS", "REAL", "IMAG", "ARG", "NORM")


def expression(correlation) -> str:
    """The CASA expression of a correlation text: 'ABS' (the default), 'REAL', 'IMAG', 'ARG', 'NORM'."""
    for item in str(correlation or "").split(","):
        head = item.strip().upper().split("_", 1)
        if len(head) == 2 and head[0] in PREFIXES:
            return head[0]
    return "ABS"


def values(d, expr):
    """The real values of ``expr`` of complex ``d``; float32 for complex64 data, as CASA's mappers (|V|
    rounded as CASA's: :func:`alakazam.flagging.tfcrop.amplitude`)."""
    single = d.dtype == np.complex64
    if expr == "ABS":
        if single:
            from .tfcrop import amplitude

            return amplitude(d)
        return np.abs(d)
    if expr == "REAL":
        out = d.real
    elif expr == "IMAG":
        out = d.imag
    elif expr == "ARG":
        out = np.angle(d)
    elif expr == "NORM":
        out = d.real * d.real + d.imag * d.imag     # (in float32: fewer differences from CASA than |V|^2)
    else:
        raise ValueError(f"expression {expr!r}: one of {PREFIXES} expected")
    return np.asarray(out, np.float32 if single else np.float64)
