"""Simulated Measurement Sets with known Jones terms and noise (used by tests, demo and benchmarks).

``simulate_ms(path, ...)`` writes a valid MS from scratch with python-casacore (through its
:class:`alakazam.core.ms.MeasurementSet` handle: :meth:`~alakazam.core.ms.MeasurementSet.create`) and
returns a :class:`Truth`, also saved beside the MS as ``<ms>.truth.npz``.

What is in it
-------------
* ANTENNA: ``n_ant`` active antennas (names C00, C01, ...) around the VLA centre plus ``n_ant_extra``
  antennas that never appear in the main table (one of them at ANTENNA id 1, so active ids are not
  contiguous).  OBSERVATION telescope 'VLA'; FEED with receptor angles; POLARIZATION linear
  (XX XY YX YY) or circular (RR RL LR LL).
* SPECTRAL_WINDOW: one per entry of ``n_chan`` (L band, 1 MHz channels by default); DATA_DESCRIPTION
  rows in reverse SPW order, so DATA_DESC_ID != SPW id.  ``descending=True`` makes the last SPW's
  frequencies descend.
* FIELD: 3C286 (polarised: I = 14.9 Jy, 10% linear at 33 deg), 3C147 (unpolarised, true 2.5 Jy but
  MODEL_DATA 1 Jy -- the flux-bootstrap case) and TARGET (unpolarised 0.7 Jy point source at the
  phase centre; its MODEL_DATA holds that true model).  Scans cycle 3C286, 3C147, TARGET over
  ``duration_h`` hours centred on the transit of 3C286, so its parallactic angle sweeps widely.
* DATA = J_p B J_q^H + complex Gaussian noise (``noise`` Jy per real/imag part; WEIGHT = 1/noise^2,
  SIGMA = noise) with the chain, in the RIME order of docs/conventions.md,
  ``J = K G_bandpass G_time KC CP D P``; every term optional.  B is the sky brightness matrix of the
  field's true Stokes parameters.  MODEL_DATA holds the model Stokes WITHOUT the parallactic rotation
  (like CASA's setjy): a solve with apply_parang puts P into the model.
* Corruptions: ``dead_ant`` (one antenna flagged, with garbage DATA, for scan 2), a few FLAG_ROW rows,
  and with ``rfi=True`` strong spikes in one channel of some rows whose FLAG is left False.
  Unflagged hazards of real data (FLAG left False; drawn from their own random stream, so the other
  values do not change when they are switched on; their positions are saved in the Truth):
  ``rfi_persistent`` (channels carrying RFI in every row -- a satellite: amplitude 2-6 x the field's
  Stokes I, varying in time, random phase per baseline and correlation), ``rfi_intermittent``
  (one or two channels of an SPW in about 10% of the integrations, 5-20 x Stokes I),
  ``rfi_bursts`` (that many integrations with RFI of 5-20 x Stokes I in every channel) and
  ``dead_antenna_scan`` = (active antenna index or name, scan): DATA of that antenna's baselines in that scan
  is noise only.

The parallactic angle of the array centre (``Truth.parang``) is computed with casacore measures
(me.posangle of the zenith seen from the source), independently of :mod:`alakazam.jones`.  DATA carry
each antenna's own parallactic angle (``Truth.parang_ant``, as the sky and CASA's applycal see it; the
antennas are up to ~2.8 km from the centre), computed with
:func:`alakazam.jones.parang.antenna_parallactic_angles`, which tests/test_parang.py checks against
me.posangle at each antenna's position.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np

TWO_PI_NS = 2.0 * np.pi * 1e-9
CORR_CODES = {"linear": [9, 10, 11, 12], "circular": [5, 6, 7, 8]}
CORR_NAMES = {"linear": ["XX", "XY", "YX", "YY"], "circular": ["RR", "RL", "LR", "LL"]}
RECEPTORS = {"linear": ["X", "Y"], "circular": ["R", "L"]}

#: name, RA (rad), Dec (rad), true Stokes (I, Q, U, V), model Stokes
FIELDS = [
    ("3C286", np.radians((13 + 31 / 60 + 8.288 / 3600) * 15), np.radians(30 + 30 / 60 + 32.96 / 3600),
     (14.9, 14.9 * 0.1 * np.cos(np.radians(66)), 14.9 * 0.1 * np.sin(np.radians(66)), 0.0), None),
    ("3C147", np.radians((5 + 42 / 60 + 36.138 / 3600) * 15), np.radians(49 + 51 / 60 + 7.23 / 3600),
     (2.5, 0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0)),
    ("TARGET", np.radians(12.5 * 15), np.radians(25.0), (0.7, 0.0, 0.0, 0.0), None),
]


@dataclass
class Truth:
    """Everything a test needs to check a calibration of the simulated MS."""

    ms: str
    feed: str
    ant_names: List[str]                 # active antennas, ANTENNA-table order
    field_names: List[str]
    spw_freqs: Dict[int, np.ndarray]     # SPW id -> channel frequencies (Hz)
    times: np.ndarray                    # unique times (MJD s)
    tau: np.ndarray                      # (n_ant, 2) ns (K)
    bandpass: Dict[int, np.ndarray]      # SPW id -> (n_ant, n_chan, 2) complex
    time_gain: np.ndarray                # (n_ant, n_time, 2) complex at ``times``
    leakage: np.ndarray                  # (n_ant, 2) complex (d_pq, d_qp)
    kc_tau: float                        # ns
    cp_phase: float                      # rad
    parang: Dict[str, np.ndarray]        # field -> the array centre's parallactic angle at ``times`` (rad)
    noise: float
    flux_true: Dict[str, tuple]          # field -> Stokes (I, Q, U, V)
    flux_model: Dict[str, tuple]
    dead_ant: Optional[str] = None
    dead_scan: Optional[int] = None
    scans: Dict[int, str] = field(default_factory=dict)   # scan number -> field name
    # unflagged corruptions (the truth of the corrupted samples; see simulate_ms)
    rfi_persistent: Dict[int, np.ndarray] = field(default_factory=dict)  # SPW id -> channels (every row)
    rfi_intermittent: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    #                                      (k, 3): (time index, SPW id, channel), all baselines
    rfi_bursts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # time indices
    noise_ant: Optional[str] = None      # the antenna whose DATA is noise only (unflagged) ...
    noise_scan: Optional[int] = None     # ... in this scan
    # field -> each antenna's own parallactic angle (n_time, n_ant) (rad): the one in DATA
    parang_ant: Dict[str, np.ndarray] = field(default_factory=dict)

    def gain(self, spw_id, t_index):
        """Total G (bandpass x time gain) (n_ant, n_chan, 2) at time index t_index."""
        return self.bandpass[spw_id] * self.time_gain[:, t_index][:, None, :]


def _brightness(stokes, feed):
    stokes_i, Q, U, V = stokes
    if feed == "linear":
        return np.array([[stokes_i + Q, U + 1j * V], [U - 1j * V, stokes_i - Q]], complex)
    return np.array([[stokes_i + V, Q + 1j * U], [Q - 1j * U, stokes_i - V]], complex)


def _rotation(chi, feed):
    P = np.zeros(np.shape(chi) + (2, 2), complex)
    if feed == "linear":
        c, s = np.cos(chi), np.sin(chi)
        P[..., 0, 0], P[..., 0, 1], P[..., 1, 0], P[..., 1, 1] = c, s, -s, c
    else:
        P[..., 0, 0] = np.exp(-1j * chi)
        P[..., 1, 1] = np.exp(1j * chi)
    return P


def _vla_itrf():
    from ..measures_data import LOCK, measures  # casacore measures, current data (one thread at a time)

    with LOCK:
        me = measures()
        v = me.measure(me.observatory("VLA"), "ITRF")
    r, lat, lon = v["m2"]["value"], v["m1"]["value"], v["m0"]["value"]
    return np.array([r * np.cos(lat) * np.cos(lon), r * np.cos(lat) * np.sin(lon), r * np.sin(lat)]), lat, lon


def _posangle(times, ra, dec, xyz):
    from ..measures_data import LOCK, measures  # casacore measures, current data (one thread at a time)

    out = np.empty(len(times))
    with LOCK:
        me = measures()
        me.doframe(me.position("ITRF", *[f"{c}m" for c in xyz]))
        src = me.direction("J2000", f"{ra}rad", f"{dec}rad")
        for i, t in enumerate(times):
            me.doframe(me.epoch("UTC", f"{t}s"))
            out[i] = me.posangle(src, me.direction("AZEL", "0deg", "90deg")).get_value("rad")
    return out


# ---------------------------------------------------------------- writing under a temporary name
# A run writes ``.<name>.simulating-<pid>-<k>`` (+ ``.truth.npz``) next to PATH, and at its end moves
# the old PATH, its truth and its flag versions to ``.<name>.replaced-<pid>-<k>`` (+ suffixes), renames
# the new pair in and deletes the old: one swap, with SIGINT / SIGTERM held (core/signals.held).
_ACTIVE: set = set()            # basenames of this process's temporaries in use
_SEQ = itertools.count()
_SUFFIXES = ("", ".flagversions", ".truth.npz")     # the MS first: its presence tells how far a swap got


def _temp_names(path):
    """(new MS temporary, aside name of the old MS) of one run to ``path`` (absolute)."""
    d, b = os.path.split(path)
    tag = f"{os.getpid()}-{next(_SEQ)}"
    _ACTIVE.add(f".{b}.simulating-{tag}")
    return os.path.join(d, f".{b}.simulating-{tag}"), os.path.join(d, f".{b}.replaced-{tag}")


def _remove(p):
    import shutil

    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
    elif os.path.lexists(p):
        os.remove(p)


def _discard(tmp):
    """Remove a run's new MS temporary and its truth (an interrupt or error before the swap)."""
    from ..core import signals

    with signals.held():            # a second Ctrl-C does not leave half of it
        for suffix in ("", ".truth.npz"):
            _remove(tmp + suffix)


def _swap_in(tmp, aside, path):
    """Put the complete new MS ``tmp`` and its truth at ``path``: the old MS, its flag versions and its
    truth (if any) are moved to ``aside``, then the new pair renamed in (:func:`_remove_replaced`
    deletes the old).  A failure part-way puts the old back."""
    moved = []
    try:
        for suffix in _SUFFIXES:
            if os.path.lexists(path + suffix):
                os.rename(path + suffix, aside + suffix)
                moved.append((path + suffix, aside + suffix))
        for suffix in ("", ".truth.npz"):
            os.rename(tmp + suffix, path + suffix)
            moved.append((tmp + suffix, path + suffix))
    except BaseException:
        for src, dst in reversed(moved):
            os.rename(dst, src)
        raise


def _remove_replaced(aside, path):
    """Delete the old MS (its flag versions first) and its truth, moved to ``aside`` by :func:`_swap_in`."""
    from ..core.outputs import remove_simulated

    try:
        remove_simulated(aside)                 # its flag versions, then the MS
        _remove(aside + ".truth.npz")
    except OSError as e:                        # the new pair is in place; the next run retries
        import logging

        logging.getLogger("alakazam.simulate").warning(
            "simulate: the replaced MS %s could not be removed (%s); the next simulate to %s removes it",
            aside, e, path)


def _run_gone(pid, name):
    """The run that made temporary ``name`` no longer runs (another process's, or this process's
    finished one): its pid is free, or it is this process's and not in use."""
    if pid == os.getpid():
        return name not in _ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def clean_leftovers(path):
    """Tidy what a killed simulate to ``path`` left (kill -9, power loss; an interrupt or error removes
    its own): a new MS temporary is deleted; an old MS moved aside is put back at ``path`` when the
    new one never got there, else deleted (the new pair is in place; a truth file the run had not yet
    renamed in goes beside it).  Temporaries of runs still going are left alone."""
    import logging
    import re

    log = logging.getLogger("alakazam.simulate")
    d, b = os.path.split(os.path.abspath(str(path)))
    path = os.path.join(d, b)
    pat = re.compile(re.escape(f".{b}.") + r"(simulating|replaced)-(\d+)-(\d+)"
                     r"(?:\.truth\.npz|\.flagversions)?$")
    try:
        names = os.listdir(d)
    except OSError:
        return
    runs = set()
    for e in names:
        m = pat.match(e)
        if m and _run_gone(int(m.group(2)), f".{b}.simulating-{m.group(2)}-{m.group(3)}"):
            runs.add(f"{m.group(2)}-{m.group(3)}")
    for tag in sorted(runs):
        tmp = os.path.join(d, f".{b}.simulating-{tag}")
        aside = os.path.join(d, f".{b}.replaced-{tag}")
        if os.path.isdir(aside) and not os.path.lexists(path):
            # killed after moving the old MS aside, before the new one was in: the old comes back
            for suffix in _SUFFIXES:
                if os.path.lexists(aside + suffix) and not os.path.lexists(path + suffix):
                    os.rename(aside + suffix, path + suffix)
            log.warning("simulate: %s put back (a simulate replacing it was killed part-way)", path)
        elif os.path.isdir(aside):
            # killed after the new MS was in: its truth too, then the old goes
            if not os.path.lexists(tmp) and os.path.isfile(tmp + ".truth.npz") and \
                    not os.path.lexists(path + ".truth.npz"):
                os.rename(tmp + ".truth.npz", path + ".truth.npz")
        for p in [aside + s for s in _SUFFIXES] + [tmp, tmp + ".truth.npz"]:
            if os.path.lexists(p):
                _remove(p)
                log.info("simulate: removed %s, left by a simulate that was killed", p)


def simulate_interrupted(path, complete=None) -> str:
    """The CLI's message for a Ctrl-C (or SIGTERM) of ``alakazam simulate PATH``; ``complete``: the
    interrupt came after the new MS and its truth were in place (the KeyboardInterrupt's
    ``simulate_complete``)."""
    if complete:
        return (f"alakazam: interrupted after {path} and {path}.truth.npz were written completely "
                "(the interrupt waited for them to be renamed into place)")
    kept = (f"; the existing {path} and its truth file are kept unchanged"
            if os.path.lexists(os.path.abspath(str(path))) else "")
    return (f"alakazam: interrupted: {path} was not written (a simulated MS is written under a temporary "
            f"name and renamed into place only when complete; the temporary is removed){kept}: "
            "run the command again to write it")


def simulate_ms(path, n_ant=6, n_ant_extra=2, n_chan=(16, 8), feed="linear", duration_h=3.0,
                int_s=60.0, scan_len_s=600.0, chan_width=1.0e6, f0=1.30e9, noise=0.01, seed=0,
                delays=True, bandpass=True, time_gains=True, leakage=True, crosshand=True,
                parang_in_data=True, receptor_angle=0.0, dead_ant=True, rfi=False, flag_rows=0.005,
                descending=False, weight_spectrum=False, start_mjd_day=60401, overwrite=False,
                rows_per_write=20000, apply_parang_in_data=None, leakage_scale=0.05,
                leakage_ref_zero=False, spix=None, rfi_persistent=None, rfi_intermittent=False, rfi_bursts=0,
                dead_antenna_scan=None, mounts=None) -> Truth:
    """Write a simulated MS at ``path`` and return (and save) its :class:`Truth`; see the module doc.

    Sizes: ``n_ant`` active (+ ``n_ant_extra`` without data), ``n_chan`` one entry per SPW,
    ``duration_h`` hours of ``int_s`` integrations in scans of ``scan_len_s``.  Rows are written in
    blocks of about ``rows_per_write`` rows, so memory stays bounded for GB-sized MSs.
    ``overwrite`` (default False): replace an existing ``path``, which must be an MS written by
    ``alakazam simulate`` (:func:`alakazam.core.outputs.check_replace_simulated`); without it an
    existing ``path`` is an AlakazamError and nothing is touched.  The MS and its truth are written
    under a temporary name next to ``path`` (``.<name>.simulating-<pid>-<k>``) and renamed into place
    when complete (the old MS, its truth and flag versions deleted only then): an error, Ctrl-C or
    SIGTERM part-way leaves ``path`` as it was and no temporary; a kill -9's leftovers are tidied by
    the next run to ``path`` (:func:`clean_leftovers`).
    ``apply_parang_in_data`` is an alias of ``parang_in_data`` (DATA include P when True; MODEL_DATA
    never does; without P the ANTENNA MOUNT is EQUATORIAL, feeds that do not turn, else ALT-AZ).
    ``mounts`` (one ANTENNA MOUNT text per ANTENNA row, ``n_ant + n_ant_extra``; with ``parang_in_data``):
    written to the ANTENNA table, each antenna's DATA turned as its mount turns the feeds
    (:func:`alakazam.jones.parang.feed_parallactic_angles`; ``Truth.parang_ant`` holds those angles).
    Leakages are ``leakage_scale * (N(0,1) + i N(0,1))`` per antenna and feed; ``leakage_ref_zero``
    sets d_pq of the first active antenna (C00) to 0, the gauge a D solve with that reference antenna
    imposes (docs/conventions.md), so solved leakages compare with the truth directly (for a polarised
    calibrator the d_pq[ref] = 0 gauge is not an exact symmetry of the data: the truth cannot be
    transformed into it).
    ``spix``: optional {field name: spectral index alpha}; that field's true Stokes then scale as
    ``(freq / f0) ** alpha`` (Truth.flux_true holds the values at f0; MODEL_DATA is unchanged).
    ``rfi_persistent``: channel indices of SPW 0, or a dict {SPW id: channel indices};
    ``rfi_intermittent``: bool; ``rfi_bursts``: number of integrations; ``dead_antenna_scan``:
    (active antenna index or name, scan number) or None (module docstring).
    """
    from casacore.tables import makearrcoldesc, maketabdesc

    from ..core.ms import MeasurementSet

    if feed not in ("linear", "circular"):
        raise ValueError(f"feed must be 'linear' or 'circular', got {feed!r}")
    from .checks import check_args        # every bad size / duration together, before anything is written

    check_args(path, n_ant, n_ant_extra, n_chan, duration_h, int_s, scan_len_s, chan_width, f0, noise,
               rows_per_write)
    if apply_parang_in_data is not None:
        parang_in_data = bool(apply_parang_in_data)
    if mounts is not None:
        from ..errors import AlakazamError

        if isinstance(mounts, (str, bytes)) or not all(isinstance(m, str) for m in mounts):
            raise AlakazamError(f"mounts: expected a list of ANTENNA MOUNT texts (one per antenna), got "
                                f"{mounts!r}")
        mounts = list(mounts)
        if len(mounts) != n_ant + n_ant_extra or not parang_in_data:
            raise AlakazamError(f"mounts: expected one ANTENNA MOUNT per antenna ({n_ant + n_ant_extra}) "
                                f"with parang_in_data, got {len(mounts)} (parang_in_data={parang_in_data})")
    rng = np.random.default_rng(seed)
    path = os.path.abspath(str(path))
    from ..core import signals
    from ..core.outputs import check_replace_simulated
    from ..jones.parang import apparent_sidereal_time

    # what a killed run to PATH left goes first (an old MS it had moved aside is put back); then an
    # existing PATH is replaced only with overwrite, and only when it is an MS this function wrote (its
    # flag versions go with it) -- checked again before the swap, and nothing is deleted before then
    clean_leftovers(path)
    check_replace_simulated(path, overwrite)
    n_chan = [int(n) for n in np.atleast_1d(n_chan)]
    n_spw = len(n_chan)
    n_all = n_ant + n_ant_extra

    # ---------------- array: active antennas + extras (one extra at ANTENNA id 1)
    centre, lat, lon = _vla_itrf()
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    enu = rng.uniform(-2000, 2000, (n_all, 2))
    pos = centre + enu[:, :1] * east + enu[:, 1:2] * north + rng.uniform(-5, 5, (n_all, 1)) * up
    extra_ids = [1] + list(range(n_ant + 1, n_all)) if n_ant_extra > 0 else []
    active_ids = [i for i in range(n_all) if i not in extra_ids][:n_ant]
    names = [f"C{i:02d}" for i in range(n_all)]

    # ---------------- frequencies (SPW s), DATA_DESCRIPTION d -> SPW n_spw-1-d
    spw_freqs = {}
    for s in range(n_spw):
        fr = f0 + s * (n_chan[0] + 4) * chan_width + chan_width * np.arange(n_chan[s])
        if descending and s == n_spw - 1:
            fr = fr[::-1].copy()
        spw_freqs[s] = fr
    ddid_spw = [n_spw - 1 - d for d in range(n_spw)]

    # ---------------- schedule: transit of 3C286 mid-run
    t_day = start_mjd_day * 86400.0
    gast0 = apparent_sidereal_time(np.array([t_day]), lon, centre)[0]
    ra286 = FIELDS[0][1]
    ha0 = gast0 + lon - ra286
    dt = ((-ha0) % (2 * np.pi)) / (1.002737909350795 * 2 * np.pi / 86400.0)
    t_start = t_day + dt - duration_h * 3600 / 2
    n_int = int(round(duration_h * 3600 / int_s))
    times = t_start + int_s * (np.arange(n_int) + 0.5)
    per_scan = max(1, int(round(scan_len_s / int_s)))
    scan_idx = np.arange(n_int) // per_scan
    scan_of_time = scan_idx + 1
    field_of_time = scan_idx % len(FIELDS)
    n_time = n_int

    # ---------------- truth
    a_idx = np.arange(n_ant)
    tau = rng.uniform(-5, 5, (n_ant, 2)) if delays else np.zeros((n_ant, 2))
    bp = {}
    for s in range(n_spw):
        x = np.linspace(-1, 1, n_chan[s])[None, :, None]
        if bandpass:
            # amplitude: a per-antenna scale times a ripple common to all antennas (per pol), so an
            # ``inf`` bandpass solved over time-variable gains is exactly separable (the per-channel
            # least-squares weights are then the same at every channel); ripple and phase are even
            # about the band centre, so no delay-like slope hides in the bandpass and K is separable
            amp = rng.uniform(0.9, 1.1, (n_ant, 1, 2)) * (
                1 + 0.1 * np.cos(np.pi * x * rng.uniform(0.5, 1.5, (1, 1, 2))))
            # even in frequency about the band centre: no delay-like (linear) phase, so K and the
            # bandpass are separable and each can be compared with its own truth
            ph = 0.3 * rng.normal(size=(n_ant, 1, 2)) * (x ** 2 - (x ** 2).mean())
            bp[s] = amp * np.exp(1j * ph)
        else:
            bp[s] = np.ones((n_ant, n_chan[s], 2), complex)
    if time_gains:
        tt = (times - times[0])[None, :, None] / 3600.0
        amp = 1 + 0.1 * np.sin(2 * np.pi * tt / rng.uniform(2, 5, (n_ant, 1, 2))
                               + rng.uniform(0, 6, (n_ant, 1, 2)))
        # the drift (atmosphere) is common to both feeds of an antenna; each feed has its own
        # constant instrumental phase
        ph = rng.uniform(-np.pi, np.pi, (n_ant, 1, 2)) + 1.0 * np.sin(
            2 * np.pi * tt / rng.uniform(1.5, 4, (n_ant, 1, 1)) + rng.uniform(0, 6, (n_ant, 1, 1)))
        tg = amp * np.exp(1j * ph)
    else:
        tg = np.ones((n_ant, n_time, 2), complex)
    dleak = leakage_scale * (rng.normal(size=(n_ant, 2)) + 1j * rng.normal(size=(n_ant, 2))) if leakage \
        else np.zeros((n_ant, 2), complex)
    if leakage_ref_zero:
        dleak[0, 0] = 0.0
    kc_tau = 0.8 if crosshand else 0.0
    cp_phase = 0.6 if crosshand else 0.0
    parang = {f[0]: _posangle(times, f[1], f[2], centre) for f in FIELDS}
    from ..jones.parang import antenna_parallactic_angles
    if mounts is not None:
        from ..jones.parang import feed_parallactic_angles
        parang_ant = {f[0]: feed_parallactic_angles(times, f[1], f[2], pos[active_ids], centre,
                                                    [mounts[i] for i in active_ids]) for f in FIELDS}
    else:
        parang_ant = {f[0]: antenna_parallactic_angles(times, f[1], f[2], pos[active_ids], centre)
                      for f in FIELDS}
    dead = (a_idx[2], 2) if (dead_ant and n_ant > 3) else None
    # unflagged hazards: their own random stream (the values above do not depend on them)
    hz = np.random.default_rng([seed, 7919])
    if rfi_persistent is None:
        rfi_persistent = {}
    elif not isinstance(rfi_persistent, dict):
        rfi_persistent = {0: rfi_persistent}
    rfi_persistent = {int(k): np.asarray(sorted({int(c) for c in np.atleast_1d(v)}), np.int64)
                      for k, v in rfi_persistent.items() if len(np.atleast_1d(v))}
    for s_, ch_ in rfi_persistent.items():
        if s_ not in range(n_spw) or (len(ch_) and (ch_.min() < 0 or ch_.max() >= n_chan[s_])):
            raise ValueError(f"rfi_persistent: SPW {s_} channels {ch_.tolist()} outside the "
                             f"{n_chan} channels of SPWs 0..{n_spw - 1}")
    # slow amplitude variation of the persistent RFI: 2-6 x Stokes I
    rfi_period = hz.uniform(600, 1800)
    rfi_phase0 = hz.uniform(0, 2 * np.pi)
    intermittent = []
    if rfi_intermittent:
        for ti in np.flatnonzero(hz.uniform(size=n_time) < 0.1):
            for s_ in range(n_spw):
                for c_ in hz.choice(n_chan[s_], size=min(n_chan[s_], int(hz.integers(1, 3))), replace=False):
                    intermittent.append((int(ti), s_, int(c_)))
    intermittent = np.array(intermittent, np.int64).reshape(-1, 3)
    bursts = np.sort(hz.choice(n_time, size=min(int(rfi_bursts), n_time), replace=False)).astype(np.int64) \
        if rfi_bursts else np.zeros(0, np.int64)
    if dead_antenna_scan is not None:
        na_, ns_ = dead_antenna_scan[0], int(dead_antenna_scan[1])
        active_names = [names[i] for i in active_ids]
        if isinstance(na_, str) and not na_.strip().lstrip("-").isdigit():
            if na_.strip() not in active_names:
                raise ValueError(f"dead_antenna_scan: antenna {na_!r} is not an active antenna "
                                 f"({', '.join(active_names)})")
            na_ = active_names.index(na_.strip())
        na_ = int(na_)
        if not 0 <= na_ < n_ant:
            raise ValueError(f"dead_antenna_scan: antenna index {na_} outside 0..{n_ant - 1}")
        if ns_ not in set(scan_of_time.tolist()):     # no such scan: nothing would be dead
            raise ValueError(f"dead_antenna_scan: scan {ns_} is not a scan of the simulated MS "
                             f"(1..{int(scan_of_time.max())})")
        if dead is not None and (na_, ns_) == (int(dead[0]), int(dead[1])):
            raise ValueError(f"dead_antenna_scan: {names[active_ids[na_]]} in scan {ns_} is the antenna and "
                             "scan the simulator already flags (dead_ant): noise there would be flagged "
                             "data and test nothing; choose another antenna or scan")
        dead_antenna_scan = (na_, ns_)

    # ---------------- the MS
    td = maketabdesc([makearrcoldesc("DATA", 0j, ndim=2, valuetype="complex"),
                      makearrcoldesc("MODEL_DATA", 0j, ndim=2, valuetype="complex")]
                     + ([makearrcoldesc("WEIGHT_SPECTRUM", 0.0, ndim=2, valuetype="float")]
                        if weight_spectrum else []))
    # bulk columns in tiled storage (per-DDID shapes differ, hence TiledShapeStMan), as CASA does
    tiled = ["DATA", "MODEL_DATA", "FLAG"] + (["WEIGHT_SPECTRUM"] if weight_spectrum else [])
    dminfo = {f"*{i + 1}": {"TYPE": "TiledShapeStMan", "NAME": f"Tiled{c}", "COLUMNS": [c],
                           "SPEC": {"DEFAULTTILESHAPE": np.array([4, 64, 128], np.int32)}}
              for i, c in enumerate(tiled)}
    # written under a temporary name next to PATH (with its truth) and renamed into place only when
    # complete: a Ctrl-C, SIGTERM or error part-way leaves PATH as it was (an old MS and its truth
    # intact, or nothing) and removes the temporary; a kill -9's leftovers go at the next run
    tmp, aside = _temp_names(path)
    complete = []
    try:
        ms = MeasurementSet.create(tmp, td, dminfo)      # every table written through its handle (core/ms.py)
        with ms.write_table("ANTENNA") as t:
            t.addrows(n_all)
            t.putcol("NAME", names)
            t.putcol("STATION", [f"W{i:02d}" for i in range(n_all)])
            t.putcol("POSITION", pos)
            t.putcol("OFFSET", np.zeros((n_all, 3)))
            t.putcol("TYPE", ["GROUND-BASED"] * n_all)
            # DATA without the parallactic rotation are those of feeds that do not turn against the sky:
            # an equatorial mount (calibration/polparang.py reads it; review 58f)
            t.putcol("MOUNT", list(mounts) if mounts is not None
                     else ["ALT-AZ" if parang_in_data else "EQUATORIAL"] * n_all)
            t.putcol("DISH_DIAMETER", np.full(n_all, 25.0))
            t.putcol("FLAG_ROW", np.zeros(n_all, bool))
        with ms.write_table("FEED") as t:
            t.addrows(n_all)
            t.putcol("ANTENNA_ID", np.arange(n_all))
            t.putcol("FEED_ID", np.zeros(n_all, int))
            t.putcol("SPECTRAL_WINDOW_ID", -np.ones(n_all, int))
            t.putcol("TIME", np.full(n_all, times[0]))
            t.putcol("INTERVAL", np.full(n_all, 1e30))
            t.putcol("NUM_RECEPTORS", np.full(n_all, 2))
            t.putcol("BEAM_ID", -np.ones(n_all, int))
            t.putcol("BEAM_OFFSET", np.zeros((n_all, 2, 2)))
            t.putcol("POLARIZATION_TYPE", np.array([RECEPTORS[feed]] * n_all))
            t.putcol("POL_RESPONSE", np.tile(np.eye(2, dtype=complex), (n_all, 1, 1)))
            t.putcol("POSITION", np.zeros((n_all, 3)))
            t.putcol("RECEPTOR_ANGLE", np.tile([receptor_angle, receptor_angle + np.pi / 2], (n_all, 1)))
        with ms.write_table("SPECTRAL_WINDOW") as t:
            t.addrows(n_spw)
            for s in range(n_spw):
                fr = spw_freqs[s]
                w = np.full(len(fr), np.sign(fr[-1] - fr[0]) * chan_width if len(fr) > 1 else chan_width)
                t.putcell("CHAN_FREQ", s, fr)
                t.putcell("CHAN_WIDTH", s, w)
                t.putcell("EFFECTIVE_BW", s, np.abs(w))
                t.putcell("RESOLUTION", s, np.abs(w))
                t.putcell("NUM_CHAN", s, len(fr))
                t.putcell("REF_FREQUENCY", s, float(fr[0]))
                t.putcell("TOTAL_BANDWIDTH", s, float(np.abs(w).sum()))
                t.putcell("NAME", s, f"SPW{s}")
                t.putcell("MEAS_FREQ_REF", s, 5)
                t.putcell("NET_SIDEBAND", s, 1)
        with ms.write_table("POLARIZATION") as t:
            t.addrows(1)
            t.putcell("NUM_CORR", 0, 4)
            t.putcell("CORR_TYPE", 0, np.array(CORR_CODES[feed]))
            # MS shape [2, NUM_CORR] (casacore, Fortran order) = numpy (NUM_CORR, 2): (receptor 1, 2) per corr
            t.putcell("CORR_PRODUCT", 0, np.array([[0, 0], [0, 1], [1, 0], [1, 1]]))
            t.putcell("FLAG_ROW", 0, False)
        with ms.write_table("DATA_DESCRIPTION") as t:
            t.addrows(n_spw)
            t.putcol("SPECTRAL_WINDOW_ID", np.array(ddid_spw))
            t.putcol("POLARIZATION_ID", np.zeros(n_spw, int))
            t.putcol("FLAG_ROW", np.zeros(n_spw, bool))
        with ms.write_table("FIELD") as t:
            t.addrows(len(FIELDS))
            t.putcol("NAME", [f[0] for f in FIELDS])
            t.putcol("CODE", ["C", "C", "T"])
            d = np.array([[[f[1], f[2]]] for f in FIELDS])
            t.putcol("PHASE_DIR", d)
            t.putcol("DELAY_DIR", d)
            t.putcol("REFERENCE_DIR", d)
            t.putcol("NUM_POLY", np.zeros(len(FIELDS), int))
            t.putcol("TIME", np.full(len(FIELDS), times[0]))
            t.putcol("SOURCE_ID", -np.ones(len(FIELDS), int))
            t.putcol("FLAG_ROW", np.zeros(len(FIELDS), bool))
        with ms.write_table("OBSERVATION") as t:
            t.addrows(1)
            t.putcell("TELESCOPE_NAME", 0, "VLA")
            t.putcell("TIME_RANGE", 0, np.array([times[0] - int_s / 2, times[-1] + int_s / 2]))
            t.putcell("OBSERVER", 0, "alakazam simulate")
            t.putcell("PROJECT", 0, "SIM")
            t.putcell("RELEASE_DATE", 0, 0.0)
            t.putcell("FLAG_ROW", 0, False)
        with ms.write_table("PROCESSOR") as t:
            t.addrows(1)
            t.putcell("TYPE", 0, "CORRELATOR")
            t.putcell("SUB_TYPE", 0, "")
            t.putcell("TYPE_ID", 0, 0)
            t.putcell("MODE_ID", 0, 0)
            t.putcell("FLAG_ROW", 0, False)

        # ---------------- main table rows: time, then DATA_DESC_ID, then baseline (a < b)
        bl1, bl2 = np.triu_indices(n_ant, 1)
        n_bl = len(bl1)
        gast = apparent_sidereal_time(times, lon, centre)
        # (n_bl, 3) ITRF, ANTENNA1's position minus ANTENNA2's: CASA's UVW sign (measured: CASA's fixvis
        # recomputed the UVW of X2 - X1 with every component negated, tests/test_flag_parity.py; the sign
        # matters to flagdata's shadow, which antenna a w > 0 row shadows)
        bvec = pos[np.array(active_ids)[bl1]] - pos[np.array(active_ids)[bl2]]
        P_all = {}
        chi_rec = receptor_angle
        for fname, *_ in FIELDS:
            P_all[fname] = _rotation(parang_ant[fname] + chi_rec, feed) if parang_in_data \
                else _rotation(np.zeros((n_time, n_ant)), feed)          # (time, ant, 2, 2)
        D = np.zeros((n_ant, 2, 2), complex)
        D[:, 0, 0] = D[:, 1, 1] = 1
        D[:, 0, 1] = dleak[:, 0]
        D[:, 1, 0] = dleak[:, 1]

        rows_per_time = n_spw * n_bl
        n_rows = n_time * rows_per_time
        flagrow_mask = rng.uniform(size=n_rows) < flag_rows
        from .. import progress

        with ms.write_table() as t, progress.bar("simulate: integrations", n_time) as pbar:
            t.addrows(n_rows)
            tpw = max(1, rows_per_write // rows_per_time)
            for t0 in range(0, n_time, tpw):
                tsl = np.arange(t0, min(n_time, t0 + tpw))
                nt = len(tsl)
                r0 = t0 * rows_per_time
                nr = nt * rows_per_time
                col = {k: [] for k in ("TIME", "A1", "A2", "DD", "FLD", "SCAN", "UVW")}
                for ti in tsl:
                    for d in range(n_spw):
                        col["TIME"].append(np.full(n_bl, times[ti]))
                        col["A1"].append(np.array(active_ids)[bl1])
                        col["A2"].append(np.array(active_ids)[bl2])
                        col["DD"].append(np.full(n_bl, d))
                        col["FLD"].append(np.full(n_bl, field_of_time[ti]))
                        col["SCAN"].append(np.full(n_bl, scan_of_time[ti]))
                        f = FIELDS[field_of_time[ti]]
                        h = gast[ti] - f[1]
                        dec = f[2]
                        X, Y, Z = bvec[:, 0], bvec[:, 1], bvec[:, 2]
                        u = np.sin(h) * X + np.cos(h) * Y
                        v = -np.sin(dec) * np.cos(h) * X + np.sin(dec) * np.sin(h) * Y + np.cos(dec) * Z
                        w = np.cos(dec) * np.cos(h) * X - np.cos(dec) * np.sin(h) * Y + np.sin(dec) * Z
                        col["UVW"].append(np.stack([u, v, w], axis=1))
                for k in col:
                    col[k] = np.concatenate(col[k])
                t.putcol("TIME", col["TIME"], r0, nr)
                t.putcol("TIME_CENTROID", col["TIME"], r0, nr)
                t.putcol("INTERVAL", np.full(nr, int_s), r0, nr)
                t.putcol("EXPOSURE", np.full(nr, int_s), r0, nr)
                t.putcol("ANTENNA1", col["A1"], r0, nr)
                t.putcol("ANTENNA2", col["A2"], r0, nr)
                t.putcol("DATA_DESC_ID", col["DD"], r0, nr)
                t.putcol("FIELD_ID", col["FLD"], r0, nr)
                t.putcol("SCAN_NUMBER", col["SCAN"], r0, nr)
                t.putcol("UVW", col["UVW"], r0, nr)
                t.putcol("STATE_ID", -np.ones(nr, int), r0, nr)
                t.putcol("ARRAY_ID", np.zeros(nr, int), r0, nr)
                t.putcol("OBSERVATION_ID", np.zeros(nr, int), r0, nr)
                t.putcol("PROCESSOR_ID", np.zeros(nr, int), r0, nr)
                t.putcol("FEED1", np.zeros(nr, int), r0, nr)
                t.putcol("FEED2", np.zeros(nr, int), r0, nr)
                t.putcol("SIGMA", np.full((nr, 4), noise if noise > 0 else 1.0, np.float32), r0, nr)
                t.putcol("WEIGHT", np.full((nr, 4), 1 / noise ** 2 if noise > 0 else 1.0, np.float32), r0, nr)
                t.putcol("FLAG_ROW", flagrow_mask[r0:r0 + nr], r0, nr)
                # visibilities, per (time, ddid): J (n_ant, n_chan, 2, 2)
                row = r0
                for ti in tsl:
                    fidx = field_of_time[ti]
                    fname, _, _, s_true, s_model = FIELDS[fidx]
                    B = _brightness(s_true, feed)
                    Bm = _brightness(s_model if s_model is not None else s_true, feed)
                    P = P_all[fname][ti]
                    for d in range(n_spw):
                        s = ddid_spw[d]
                        fr = spw_freqs[s]
                        nc = len(fr)
                        J = np.zeros((n_ant, nc, 2, 2), complex)
                        k = np.exp(-1j * TWO_PI_NS * tau[:, None, :] * fr[None, :, None])        # (a, c, 2)
                        g = bp[s] * tg[:, ti][:, None, :]
                        kc = np.exp(-1j * TWO_PI_NS * kc_tau * fr)                               # (c,)
                        diag = k * g
                        diag[..., 0] *= kc[None, :]
                        diag[..., 1] *= np.exp(1j * cp_phase)
                        J[..., 0, 0] = diag[..., 0]
                        J[..., 1, 1] = diag[..., 1]
                        J = np.einsum("acij,ajk->acik", J, D)
                        J = np.einsum("acij,ajk->acik", J, P)                  # each antenna's own P
                        if spix and fname in spix:
                            Bc = B[None] * ((fr / f0) ** float(spix[fname]))[:, None, None]
                            V = np.einsum("bcij,cjk,bclk->bcil", J[bl1], Bc, np.conj(J[bl2]))
                        else:
                            V = np.einsum("bcij,jk,bclk->bcil", J[bl1], B, np.conj(J[bl2]))
                        V = V.reshape(n_bl, nc, 4)
                        if noise > 0:
                            V = V + noise * (rng.normal(size=V.shape) + 1j * rng.normal(size=V.shape))
                        M = np.broadcast_to(Bm.reshape(1, 1, 4), (n_bl, nc, 4))
                        F = np.zeros((n_bl, nc, 4), bool)
                        if dead is not None and scan_of_time[ti] == dead[1]:
                            bad = (bl1 == dead[0]) | (bl2 == dead[0])
                            F[bad] = True
                            V[bad] = 1e3 * (rng.normal(size=V[bad].shape) + 1j)
                        if rfi and (ti % 7 == 3):
                            V[:, nc // 3, :] += 500.0
                        if dead_antenna_scan is not None and scan_of_time[ti] == dead_antenna_scan[1]:
                            bad = (bl1 == dead_antenna_scan[0]) | (bl2 == dead_antenna_scan[0])
                            V[bad] = noise * (hz.normal(size=V[bad].shape)
                                              + 1j * hz.normal(size=V[bad].shape))
                        stokes_i = float(s_true[0])
                        for c_ in rfi_persistent.get(s, ()):
                            amp = stokes_i * (4.0 + 2.0 * np.sin(
                                2 * np.pi * (times[ti] - times[0]) / rfi_period + rfi_phase0 + 0.7 * c_))
                            V[:, c_, :] += amp * np.exp(2j * np.pi * hz.uniform(size=(n_bl, 4)))
                        now = intermittent[(intermittent[:, 0] == ti) & (intermittent[:, 1] == s)]
                        for _, s2_, c_ in now:
                            V[:, c_, :] += (stokes_i * hz.uniform(5, 20)
                                            * np.exp(2j * np.pi * hz.uniform(size=(n_bl, 4))))
                        if ti in bursts:
                            V += stokes_i * hz.uniform(5, 20) * np.exp(2j * np.pi * hz.uniform(size=V.shape))
                        t.putcol("DATA", V.astype(np.complex64), row, n_bl)
                        t.putcol("MODEL_DATA", M.astype(np.complex64), row, n_bl)
                        t.putcol("FLAG", F, row, n_bl)
                        if weight_spectrum:
                            t.putcol("WEIGHT_SPECTRUM",
                                     np.full((n_bl, nc, 4), 1 / noise ** 2 if noise > 0 else 1.0, np.float32),
                                     row, n_bl)
                        row += n_bl
                pbar.advance(nt)

        truth = Truth(
            ms=path, feed=feed, ant_names=[names[i] for i in active_ids],
            field_names=[f[0] for f in FIELDS], spw_freqs=spw_freqs, times=times, tau=tau, bandpass=bp,
            time_gain=tg, leakage=dleak, kc_tau=kc_tau, cp_phase=cp_phase, parang=parang,
            parang_ant=parang_ant, noise=noise,
            flux_true={f[0]: tuple(f[3]) for f in FIELDS},
            flux_model={f[0]: tuple(f[4] if f[4] is not None else f[3]) for f in FIELDS},
            dead_ant=names[active_ids[dead[0]]] if dead is not None else None,
            dead_scan=int(dead[1]) if dead is not None else None,
            scans={int(s): FIELDS[field_of_time[i]][0] for i, s in enumerate(scan_of_time)},
            rfi_persistent=rfi_persistent, rfi_intermittent=intermittent, rfi_bursts=bursts,
            noise_ant=names[active_ids[dead_antenna_scan[0]]] if dead_antenna_scan is not None else None,
            noise_scan=int(dead_antenna_scan[1]) if dead_antenna_scan is not None else None)
        save_truth(truth, tmp + ".truth.npz")
        check_replace_simulated(path, overwrite)        # still free, or still ours to replace
        with signals.held():                            # an interrupt waits for the swap to end
            _swap_in(tmp, aside, path)
            complete.append(True)
            _remove_replaced(aside, path)
    except BaseException as e:
        if complete and isinstance(e, KeyboardInterrupt):
            e.simulate_complete = path                  # interrupted after the new pair was in place
        else:
            _discard(tmp)
        raise
    finally:
        _ACTIVE.discard(os.path.basename(tmp))
    return truth


def save_truth(truth: Truth, path):
    """Save a Truth as ``.npz``.

    Keys: one per :class:`Truth` field -- ``ms``, ``feed``, ``ant_names`` (active, ANTENNA order),
    ``field_names``, ``times`` (time,) MJD s, ``tau`` (ant, 2) ns, ``time_gain`` (ant, time, 2),
    ``leakage`` (ant, 2) (d_pq, d_qp), ``kc_tau`` ns, ``cp_phase`` rad, ``noise`` Jy, ``dead_ant``,
    ``dead_scan``, ``noise_ant``, ``noise_scan`` (``'__none__'`` when None), ``rfi_intermittent``
    (k, 3) (time index, SPW, channel), ``rfi_bursts`` (k,) time indices.  Dict fields are stored as
    ``'<name>/<key>'`` entries plus
    ``'<name>/__keys__'``: ``spw_freqs/<spw>`` (chan,) Hz, ``bandpass/<spw>`` (ant, chan, 2),
    ``parang/<field>`` (time,) rad (the array centre's), ``parang_ant/<field>`` (time, ant) rad (each
    antenna's own), ``flux_true/<field>`` and ``flux_model/<field>`` Stokes (I, Q, U, V)
    Jy, ``scans/<scan>`` field name, ``rfi_persistent/<spw>`` channels.  Read back with :func:`load_truth`.
    """
    out = {}
    for k, v in asdict(truth).items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k}/{kk}"] = np.asarray(vv)
            out[f"{k}/__keys__"] = np.array([str(kk) for kk in v.keys()])
        elif v is None:
            out[k] = np.array("__none__")
        else:
            out[k] = np.asarray(v)
    np.savez(path, **out)


def load_truth(ms_path) -> Truth:
    """Load ``<ms>.truth.npz`` written by :func:`simulate_ms`."""
    z = np.load(str(ms_path).rstrip("/") + ".truth.npz", allow_pickle=False)
    kw = {}
    for name in Truth.__dataclass_fields__:
        if f"{name}/__keys__" in z:
            keys = [str(k) for k in z[f"{name}/__keys__"]]
            d = {}
            for k in keys:
                int_keys = ("spw_freqs", "bandpass", "scans", "rfi_persistent")
                kk = int(k) if k.lstrip("-").isdigit() and name in int_keys else k
                val = z[f"{name}/{k}"]
                d[kk] = tuple(val.tolist()) if name.startswith("flux") else (
                    str(val) if val.dtype.kind == "U" else val)
            kw[name] = d
        elif name in z:
            v = z[name]
            if v.dtype.kind == "U" and v.ndim == 0:
                kw[name] = None if str(v) == "__none__" else str(v)
            elif v.dtype.kind == "U":
                kw[name] = [str(x) for x in v]
            elif v.ndim == 0:
                kw[name] = v.item()
            else:
                kw[name] = v
    return Truth(**kw)


def add_hazard_arguments(p):
    """The unflagged real-data hazards as command-line options (``alakazam simulate`` and
    ``python -m alakazam.sim.simulate``)."""
    p.add_argument("--rfi-persistent", metavar="CHANS", default=None,
                   help="channels with RFI in every row, unflagged: '5,7' (SPW 0) or '0:5,1:3' (SPW:chan)")
    p.add_argument("--rfi-intermittent", action="store_true",
                   help="narrow-band RFI in 1-2 channels of about 10%% of the integrations, unflagged")
    p.add_argument("--rfi-bursts", metavar="N", type=int, default=0,
                   help="N integrations with broadband RFI in every channel, unflagged")
    p.add_argument("--dead-antenna", metavar="ANT:SCAN", default=None,
                   help="antenna (active index or name) whose DATA is noise only in that scan, unflagged "
                        "(e.g. 1:4 or C04:4; the simulator itself flags the third active antenna, C03, in "
                        "scan 2)")


def hazard_kwargs(a, error):
    """Parsed options of :func:`add_hazard_arguments` -> simulate_ms keyword arguments
    (``error(message)`` reports a malformed value, e.g. ``ArgumentParser.error``)."""
    persistent = None
    if a.rfi_persistent:
        persistent = {}
        for tok in a.rfi_persistent.replace(" ", "").split(","):
            if not tok:
                continue
            spw_, _, ch_ = tok.rpartition(":")
            try:
                persistent.setdefault(int(spw_) if spw_ else 0, []).append(int(ch_))
            except ValueError:
                error(f"--rfi-persistent: {tok!r} is not CHAN or SPW:CHAN")
    dead2 = None
    if a.dead_antenna:
        try:
            ant_, scan_ = a.dead_antenna.split(":")
            if not ant_.strip():
                raise ValueError
            dead2 = (int(ant_) if ant_.strip().lstrip("-").isdigit() else ant_.strip(), int(scan_))
        except ValueError:
            error(f"--dead-antenna: {a.dead_antenna!r} is not ANT:SCAN (e.g. 1:4 or C03:4)")
    if a.rfi_bursts < 0:
        error(f"--rfi-bursts: {a.rfi_bursts} must be >= 0")
    return dict(rfi_persistent=persistent, rfi_intermittent=bool(a.rfi_intermittent),
                rfi_bursts=int(a.rfi_bursts), dead_antenna_scan=dead2)


def simulate_main(argv=None) -> Truth:
    """Command-line entry: ``python -m alakazam.sim.simulate OUT.ms [options]`` (see ``--help``)."""
    import argparse

    p = argparse.ArgumentParser(prog="alakazam simulate", description="write a simulated MS with known truth "
                                "(saved beside it as OUT.ms.truth.npz)")
    p.add_argument("out")
    p.add_argument("--n-ant", type=int, default=6)
    p.add_argument("--n-ant-extra", type=int, default=2)
    p.add_argument("--n-chan", type=int, nargs="+", default=[16, 8], help="channels per SPW")
    p.add_argument("--feed", choices=("linear", "circular"), default="linear")
    p.add_argument("--duration-h", type=float, default=3.0)
    p.add_argument("--int-s", type=float, default=60.0)
    p.add_argument("--scan-len-s", type=float, default=600.0)
    p.add_argument("--noise", type=float, default=0.01, help="Jy per real/imag part")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rfi", action="store_true")
    p.add_argument("--no-dead-ant", action="store_true")
    p.add_argument("--no-leakage", action="store_true")
    p.add_argument("--no-parang-in-data", action="store_true")
    p.add_argument("--descending", action="store_true")
    p.add_argument("--weight-spectrum", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it is an MS alakazam simulate wrote")
    add_hazard_arguments(p)
    a = p.parse_args(argv)
    hazards = hazard_kwargs(a, p.error)
    return simulate_ms(a.out, n_ant=a.n_ant, n_ant_extra=a.n_ant_extra, n_chan=tuple(a.n_chan), feed=a.feed,
                       duration_h=a.duration_h, int_s=a.int_s, scan_len_s=a.scan_len_s, noise=a.noise,
                       seed=a.seed, rfi=a.rfi, dead_ant=not a.no_dead_ant, leakage=not a.no_leakage,
                       parang_in_data=not a.no_parang_in_data, descending=a.descending,
                       weight_spectrum=a.weight_spectrum, overwrite=a.overwrite, **hazards)


if __name__ == "__main__":  # pragma: no cover
    simulate_main()
