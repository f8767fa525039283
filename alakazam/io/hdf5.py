"""HDF5 solution store in the layout of the user's design (SEED.md).

Layout::

    cal.h5                                  attrs: format_version, creator
    ├── K0/field_3C286/scan_0/spw_0/
    │   ├── jones   (n_ant, n_freq, n_time, 2, 2) complex128
    │   ├── delay   (n_ant, n_freq, n_time, 2) float64 ns   [K/KC only]
    │   ├── flags   (n_ant, n_freq, n_time) bool   (the antenna's solution is not whole)
    │   ├── pol_flags (n_ant, n_freq, n_time, 2) bool  [optional: K, G -- flags per hand,
    │   │             flags = pol_flags[..., hands].any(-1); alakazam.core.handflags]
    │   ├── time    (n_time,) MJD seconds
    │   ├── freq    (n_freq,) Hz
    │   └── solver_stats/ converged (n_freq, n_time) bool, n_iter int32, cost float64
    │                     (+ ref_ant int32: the reference antenna actually used per cell;
    │                      snr (n_ant, n_freq, n_time, 2) per pol and rchi2 (n_freq, n_time) = chi2/nDOF:
    │                      alakazam.solvers.quality; K, phase-only G / T: rchi2_phase (n_freq, n_time),
    │                      the chi2/nDOF of the fit to the data made phase-only, quality.phase_only_snr;
    │                      K, G: ref_ant_hand (n_freq, n_time, 2) each hand's reference,
    │                      alakazam.solvers.handsolve)
    │   attrs: jones_type, field_name, scan_id, spw, n_ant, field_ra, field_dec, matrix_form,
    │          ref_ant, ref_ant_name, ant_names, solint_s, freqint_hz, phase_only, feed_basis,
    │          solver_backend, apply_parang, ms, preapply_chain, preapply_tables (the table of
    │          each pre-applied key, '' = this one), preapply_interp (the time interpolation each
    │          was pre-applied with; tables before it: 'nearest'), term_id / term_written (the term's
    │          identity: one uuid4 hex per term and solve, kept by akfluxscale), preapply_ids /
    │          preapply_written / preapply_roles (those of each pre-applied term, parallel to
    │          preapply_chain; alakazam.calibration.chainid) (+ scans, time_interval, ...;
    │          K, G: hands = the hands the data record, ref_ant_hands = each hand's step reference)
    └── fluxscale/field_<name>/spw_<id>/   attrs: scale_p, scale_q, scatter_p, scatter_q, ...

Naming decisions
----------------
* ``scan_<N>`` holds the solution time bins of MS scan N (time_interval ``scan`` or a duration: bins
  never cross scans).  With time_interval ``inf`` the bins span scans; the group is then ``scan_0``
  (MS scan numbers start at 1, so 0 is free) and its attr ``scans`` lists the combined MS scans.
* ``spw_<id>`` uses the SPECTRAL_WINDOW id (not the DATA_DESC_ID).
* ``field_<name>`` uses the FIELD name verbatim ('/' replaced by '_').

Atomicity: every write goes to a temporary copy of the file in the same directory which replaces
the original with ``os.replace`` only once complete, so a crash or Ctrl-C leaves either the old or the
new file, never a half-written one.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import h5py
import numpy as np
from h5py import h5d, h5g, h5s

from .. import __version__
from ..core import signals
from ..core.scope import Scope
from ..errors import AlakazamError
from ..jones import terms as jterms

FORMAT_VERSION = "1.1"      # 1.1: the optional pol_flags dataset (readers check the major)
#: key listing order: the registry's order
TYPE_ORDER = jterms.names()
_KEY_RE = re.compile(rf"^({jterms.key_pattern()})(\d+)$")


@dataclass
class SolutionSet:
    """Solutions of one term for one field, scan group and SPW (one HDF5 leaf group)."""

    jones: np.ndarray                       # (n_ant, n_freq, n_time, 2, 2) complex128
    flags: np.ndarray                       # (n_ant, n_freq, n_time) bool
    time: np.ndarray                        # (n_time,)
    freq: np.ndarray                        # (n_freq,)
    delay: Optional[np.ndarray] = None      # (n_ant, n_freq, n_time, 2) ns
    converged: Optional[np.ndarray] = None  # (n_freq, n_time)
    n_iter: Optional[np.ndarray] = None
    cost: Optional[np.ndarray] = None
    attrs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)   # extra solver_stats arrays (ref_ant, rchi2: (n_freq, n_time);
    #                                             snr: (n_ant, n_freq, n_time, 2))
    pol_flags: Optional[np.ndarray] = None  # (n_ant, n_freq, n_time, 2) per hand (K, G); None = flags on both
    # not written: in-memory diagnostics of the solve for calibration/leakcheck.py's warnings --
    #   "model_pol_fraction" (D, without a D pre-applied): sqrt(model power in the cross hands / in the
    #     parallel hands) of the data the D was solved on (the polarised flux a gain solved there
    #     before D absorbed);
    #   "model_power" (CP, where leakcheck may warn; unit._measures_model_power): (parallel, cross) mean
    #     model power per unit weight, from a sample of the rows as read and from CP's batch;
    #   "free_reference_leakage", "absolute_gauge_info" (D): the largest |d_pq[ref]| of the free fit
    #     before CASA's re-referencing moved it into every antenna, and the smallest information on that
    #     common leakage over the cells, relative to one antenna's (solvers/leakage.absolute_gauge_info)
    diagnostics: dict = field(default_factory=dict)

    def hand_flags(self) -> np.ndarray:
        """(n_ant, n_freq, n_time, 2) bool flags per hand: ``pol_flags``, or ``flags`` on both hands
        (:func:`alakazam.core.handflags.hand_flags`; the one accessor every reader uses)."""
        from ..core.handflags import hand_flags
        return hand_flags(self)

    @property
    def field_name(self) -> str:
        return str(self.attrs.get("field_name", ""))

    @property
    def scan_id(self) -> int:
        return int(self.attrs.get("scan_id", 0))

    @property
    def spw(self) -> int:
        return int(self.attrs.get("spw", 0))

    @property
    def ant_names(self) -> List[str]:
        return [str(a) for a in self.attrs.get("ant_names", [])]

    def validate(self, where=""):
        j = np.asarray(self.jones)
        if j.ndim != 5 or j.shape[-2:] != (2, 2):
            raise AlakazamError(f"{where}: jones must be (n_ant, n_freq, n_time, 2, 2), got {j.shape}")
        n_ant, n_f, n_t = j.shape[:3]
        checks = [("flags", self.flags, (n_ant, n_f, n_t)), ("time", self.time, (n_t,)),
                  ("freq", self.freq, (n_f,))]
        if self.delay is not None:
            checks.append(("delay", self.delay, (n_ant, n_f, n_t, 2)))
        if self.pol_flags is not None:
            checks.append(("pol_flags", self.pol_flags, (n_ant, n_f, n_t, 2)))
        for name in ("converged", "n_iter", "cost"):
            if getattr(self, name) is not None:
                checks.append((name, getattr(self, name), (n_f, n_t)))
        for name, arr, shape in checks:
            if np.shape(arr) != shape:
                raise AlakazamError(f"{where}: {name} has shape {np.shape(arr)}, expected {shape}")
        names = self.attrs.get("ant_names")
        if names is not None and len(names) != n_ant:
            raise AlakazamError(f"{where}: {len(names)} ant_names for {n_ant} antennas")


def _group_path(key, s: SolutionSet) -> str:
    fname = s.field_name.replace("/", "_")
    return f"{key}/field_{fname}/scan_{s.scan_id}/spw_{s.spw}"


def _encode_attr(v):
    if isinstance(v, (list, tuple)):
        if len(v) == 0:
            return np.array([], dtype=h5py.string_dtype())
        if all(isinstance(x, str) for x in v):
            return np.array(v, dtype=h5py.string_dtype())
        return np.asarray(v)
    if isinstance(v, np.ndarray) and v.dtype.kind in "US":
        return v.astype(h5py.string_dtype())
    return v


def _decode_attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "OS":
            return [x.decode() if isinstance(x, bytes) else str(x) for x in v.tolist()]
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


class _AtomicFile:
    """Context manager: an h5py.File on a FRESH temporary file that replaces ``path`` on success only.

    The update of a solution table is one atomic replace of the whole file (convention pinned by
    tests/test_reliability.py):

    * the temporary ``.tmp-<name>-<pid>-XXXX`` is created in the directory of the real file (a symlink
      is followed: the target is replaced, the link stays) and receives a copy of every group of the
      current file (or of ``source``) except those in ``drop``; the caller then writes the new ones.
      Rewriting into a fresh file means replaced keys leave no dead space (the file does not grow on
      re-runs, unlike h5py's delete-in-place);
    * the writer lock of the table (:mod:`alakazam.core.locks`) is held throughout;
    * an existing read-only table is refused (AlakazamError), never silently replaced;
    * the new file gets the old file's permission bits, or ``0666 & ~umask`` when it is new;
    * on any exception (Ctrl-C included) the temporary is removed; temporaries left by killed writers
      (their PID no longer exists) are removed by the next writer.  An interrupt can also land where no
      handler of this class runs (inside ``mkstemp``, or between ``__enter__`` returning and the
      ``with`` body starting): the temporary is created and its writer recorded in ``_LIVE`` as one step
      (signals held), and :func:`remove_interrupted` -- called by the CLI and by an akshell task's
      rollback once the interrupt has ended the task -- cleans up the writers still recorded (file
      closed, temporary removed, table lock released);
    * the file is fsynced before ``os.replace`` and the directory after it.
    """

    def __init__(self, path, drop=(), source=None):
        self.path = os.path.abspath(path)
        self.drop = [d.strip("/") for d in drop]
        self.source = source
        self.tmp = None
        self.f = None
        self._lock = None

    def __enter__(self):
        from ..core import locks
        from ..core.outputs import writable

        real = os.path.realpath(self.path)
        self.real = real
        d = os.path.dirname(real) or "."
        if not os.path.isdir(d):
            raise AlakazamError(f"output: directory {d!r} does not exist")
        if os.path.isdir(real):
            raise AlakazamError(f"output: {self.path!r} is a directory, not a solution file")
        exists = os.path.exists(real)
        if exists and not writable(real):
            raise AlakazamError(f"output: {self.path!r} is read-only (mode "
                                f"{oct(os.stat(real).st_mode & 0o777)}); it is not replaced. Make it "
                                "writable or choose another output")
        if not writable(d):
            raise AlakazamError(f"output: directory {d!r} is not writable")
        self._lock = locks.writer_lock(real, "table")
        self._lock.__enter__()
        try:
            _clean_stale_tmps(real)
            source = self.source if self.source is not None else (real if exists else None)
            if source is not None:
                _check_file(source)
            if exists:
                mode = os.stat(real).st_mode & 0o7777
            else:
                um = os.umask(0)
                os.umask(um)
                mode = 0o666 & ~um
            with signals.held():        # created and recorded as one step (an interrupt can remove it)
                fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(real)}-{os.getpid()}-", dir=d)
                self.tmp = tmp
                _LIVE.add(self)
            os.close(fd)
            os.chmod(self.tmp, mode)
            self.f = h5py.File(self.tmp, "w")
            if source is not None:
                with h5py.File(source, "r") as src:
                    _copy_except(src, self.f, self.drop, "")
            else:
                self.f.attrs["format_version"] = FORMAT_VERSION
                self.f.attrs["creator"] = f"alakazam {__version__}"
        except BaseException as e:
            self._cleanup()
            full = self._full(e)
            if full is not None:
                raise full from e
            raise
        return self.f

    def _cleanup(self):
        try:
            if self.f is not None:
                self.f.close()
                self.f = None
        finally:
            try:
                if self.tmp and os.path.exists(self.tmp):
                    os.unlink(self.tmp)
            finally:
                _LIVE.discard(self)
                self.tmp = None
                if self._lock is not None:
                    lk, self._lock = self._lock, None
                    lk.__exit__(None, None, None)

    def _full(self, exc):
        """A full disk said as such (core/diskspace.py), or None."""
        from ..core import diskspace
        return diskspace.translate(exc, self.real, f"the solution table {self.real} (it is unchanged)")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._cleanup()
            full = self._full(exc)
            if full is not None:
                raise full from exc
            return False
        try:
            self.f.flush()
            self.f.close()
            self.f = None
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.real)
            self.tmp = None
            try:
                dfd = os.open(os.path.dirname(self.real) or ".", os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            except OSError:
                pass
        except BaseException as e:
            self._cleanup()
            full = self._full(e)
            if full is not None:
                raise full from e
            raise
        self._cleanup()
        return False


def _copy_except(src, dst, drop, prefix):
    """Copy the attrs and members of group ``src`` into ``dst``, skipping the paths in ``drop``
    (relative to the file root) and descending into groups that contain one."""
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    for name in src:
        path = f"{prefix}{name}"
        if path in drop:
            continue
        if any(d.startswith(path + "/") for d in drop) and isinstance(src[name], h5py.Group):
            _copy_except(src[name], dst.create_group(name), drop, path + "/")
        else:
            src.copy(src[name], dst, name=name)


_LIVE = set()          # _AtomicFile writers of this process with a temporary on disk


def remove_interrupted():
    """Clean up this process's writers still recorded (h5 file closed, temporary removed, table lock
    released): called once an interrupt has ended the task, when none of them can be in progress."""
    for w in list(_LIVE):
        try:
            w._cleanup()
        except Exception:       # noqa: BLE001 -- best effort after an interrupt; the next writer retries
            pass
        _LIVE.discard(w)


def _clean_stale_tmps(real):
    """Remove ``.tmp-<name>-<pid>-*`` temporaries of ``real`` whose writer process no longer exists,
    and this process's own that no writer of it holds (an interrupted akshell task's)."""
    d, b = os.path.split(real)
    pre = f".tmp-{b}-"
    try:
        names = os.listdir(d or ".")
    except OSError:
        return
    for n in names:
        if not n.startswith(pre):
            continue
        pid = n[len(pre):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        if int(pid) == os.getpid():
            if os.path.join(d, n) not in {w.tmp for w in _LIVE}:
                try:
                    os.unlink(os.path.join(d, n))
                except OSError:
                    pass
            continue
        try:
            os.kill(int(pid), 0)
            continue                    # writer alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(os.path.join(d, n))
        except OSError:
            pass


def _check_file(path):
    if not os.path.exists(path):
        raise AlakazamError(f"caltable: {path!r} does not exist")
    if os.path.isdir(path):
        raise AlakazamError(f"caltable: {path!r} is a directory (a Measurement Set or CASA table?); expected "
                            "an alakazam HDF5 solution table")
    try:
        with h5py.File(path, "r") as f:
            ver = f.attrs.get("format_version")
    except OSError as e:
        raise AlakazamError(f"caltable: {path!r} is not an HDF5 file ({e})") from None
    if ver is None:
        raise AlakazamError(f"caltable: {path!r} is not an alakazam solution file (no format_version)")
    ver = ver.decode() if isinstance(ver, bytes) else str(ver)
    if ver.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise AlakazamError(f"caltable: {path!r} has format_version {ver}; this alakazam reads "
                            f"{FORMAT_VERSION.split('.')[0]}.x")


def _write_sets(f, key, sets):
    if key in f:
        del f[key]
    f.require_group(key)
    for s in sets:
        g = f.require_group(_group_path(key, s))
        g.create_dataset("jones", data=np.asarray(s.jones, np.complex128))
        if s.delay is not None:
            g.create_dataset("delay", data=np.asarray(s.delay, np.float64))
        g.create_dataset("flags", data=np.asarray(s.flags, bool))
        if s.pol_flags is not None:
            g.create_dataset("pol_flags", data=s.hand_flags())
        g.create_dataset("time", data=np.asarray(s.time, np.float64))
        g.create_dataset("freq", data=np.asarray(s.freq, np.float64))
        st = g.create_group("solver_stats")
        n_f, n_t = s.jones.shape[1:3]
        conv = s.converged if s.converged is not None else np.ones((n_f, n_t), bool)
        st.create_dataset("converged", data=np.asarray(conv, bool))
        st.create_dataset("n_iter", data=np.asarray(
            s.n_iter if s.n_iter is not None else np.zeros((n_f, n_t)), np.int32))
        st.create_dataset("cost", data=np.asarray(
            s.cost if s.cost is not None else np.zeros((n_f, n_t)), np.float64))
        for name, arr in (s.extra or {}).items():
            st.create_dataset(name, data=np.asarray(arr))
        for k, v in s.attrs.items():
            if v is None:
                continue
            g.attrs[k] = _encode_attr(v)


def _check_sets(key, sets):
    if not _KEY_RE.match(key):
        raise AlakazamError(f"jones key {key!r} is not of the form K0, G1, D0, KC0, CP0")
    for i, s in enumerate(sets):
        s.validate(f"{key}[{i}]")
    paths = [_group_path(key, s) for s in sets]
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise AlakazamError(f"{key}: two solution sets map to the same group {dup} (e.g. two FIELD rows "
                            "with one name solved with solint 'inf': select one of them by id, or solve "
                            "per scan)")


def _new_write_id():
    import uuid

    return uuid.uuid4().hex


def write_term(path, key, sets: List[SolutionSet]):
    """Write (or replace) all solution sets of one term key, atomically."""
    write_terms(path, {key: sets})


def write_terms(path, terms: Dict[str, List[SolutionSet]]):
    """Write (or replace) several keys in ONE atomic replace of ``path``; every other key is kept.

    A solve block writes all its keys through one call at its end, so a kill leaves the old file or
    the new one, never a new K0 beside an old G0.  The keys written together share the attr
    ``write_id`` of their top group (``K0.attrs['write_id']``; see :func:`write_ids`).
    """
    for key, sets in terms.items():
        _check_sets(key, sets)
    wid = _new_write_id()
    with _AtomicFile(path, drop=list(terms)) as f:
        for key, sets in terms.items():
            _write_sets(f, key, sets)
            # every key written by one replace (one solve block, one fluxscale) carries the same write_id
            f[key].attrs["write_id"] = wid


def write_ids(path) -> Dict[str, str]:
    """{key: write_id} of the term keys (keys written by one replace share one id; '' if none)."""
    _check_file(path)
    with h5py.File(path, "r") as f:
        return {k: _decode_attr(f[k].attrs.get("write_id", "")) for k in f.keys() if _KEY_RE.match(k)}


def _read_ds(gid, name: str):
    """``group[name][()]`` of the group ``gid`` (a low-level GroupID) read with h5py's low-level calls:
    the same array (shape, dtype, bytes) without building the high-level Dataset (0.05-0.1 ms each,
    which an 800-group table paid ~10 times per group).  Scalar, empty-dataspace, string, compound and
    array-typed datasets -- which the alakazam layout does not write -- go through h5py's own
    ``[()]``."""
    ds = h5d.open(gid, name.encode("utf8", "surrogateescape"))
    shape, dt = ds.shape, ds.dtype
    if not shape or dt.kind not in "biufc" or dt.subdtype is not None or dt.names is not None:
        return h5py.Dataset(ds)[()]
    arr = np.empty(shape, dt)
    if arr.size:
        ds.read(h5s.ALL, h5s.ALL, arr)
    return arr


def _link_names(gid) -> List[str]:
    """The names of a group's links in h5py's iteration order (``list(group)``)."""
    return [n.decode("utf8", "surrogateescape") if isinstance(n, bytes) else n for n in gid]


def _read_group(g) -> SolutionSet:
    """One leaf group as a :class:`SolutionSet` (``g``: an h5py Group).  The arrays are read with
    low-level calls (:func:`_read_ds`), the attributes as ``g.attrs.items()``: the same objects and
    values as the high-level reads of before (tests/test_hdf5_read_fast.py)."""
    gid = g.id
    st = h5g.open(gid, b"solver_stats")
    extra = {k: _read_ds(st, k) for k in _link_names(st) if k not in ("converged", "n_iter", "cost")}
    return SolutionSet(
        jones=_read_ds(gid, "jones"), flags=_read_ds(gid, "flags"), time=_read_ds(gid, "time"),
        freq=_read_ds(gid, "freq"),
        delay=_read_ds(gid, "delay") if b"delay" in gid else None, converged=_read_ds(st, "converged"),
        n_iter=_read_ds(st, "n_iter"), cost=_read_ds(st, "cost"),
        attrs={k: _decode_attr(v) for k, v in g.attrs.items()}, extra=extra,
        pol_flags=_read_ds(gid, "pol_flags").astype(bool) if b"pol_flags" in gid else None)


def _leaf_groups(g):
    """The groups under ``g`` holding a ``jones`` (the solution sets), in the order h5py's
    ``visititems`` visits them -- found from the names alone (``visit``: no object is built for the
    ~10 datasets of each group), and only the leaf groups opened."""
    names = []
    g.visit(names.append)
    have = set(names)
    out = []
    for n in names:
        if n + "/jones" in have:
            obj = g[n]
            if isinstance(obj, h5py.Group):
                out.append(obj)
    return out


def list_keys(path) -> List[str]:
    """Term keys in the file, ordered K, G, D, KC, CP then by index."""
    _check_file(path)
    with h5py.File(path, "r") as f:
        return sort_keys(k for k in f.keys() if _KEY_RE.match(k))


def sort_keys(keys) -> List[str]:
    """Term keys ordered K, G, D, KC, CP then by index (as :func:`list_keys`)."""
    def order(k):
        m = _KEY_RE.match(k)
        return TYPE_ORDER.index(m.group(1)), int(m.group(2))
    return sorted(set(keys), key=order)


def resolve_key(path, key) -> str:
    """Fuzzy key match: case-insensitive; a bare type ('G') picks the only key of that type."""
    return pick_key(list_keys(path), key, path)


def pick_key(keys, key, path) -> str:
    """:func:`resolve_key` among ``keys`` (e.g. the keys a YAML block will write to ``path``; ``path``
    only names the table in the message)."""
    keys = sort_keys(keys)
    k = str(key).strip().upper()
    if k in keys:
        return k
    if k in TYPE_ORDER:
        cands = [x for x in keys if _KEY_RE.match(x).group(1) == k]
        if len(cands) == 1:
            return cands[0]
        if len(cands) > 1:
            raise AlakazamError(f"jones key {key!r} is ambiguous in {path}: {', '.join(cands)}")
    raise AlakazamError(f"jones key {key!r} not found in {path}; available: "
                        f"{', '.join(keys) if keys else '(none)'}")


#: the solution sets read inside :func:`keep_terms`: {(real path, key): (file state, sets)}
_TERMS: dict = {}
#: reads of a term from the file and reads served from :func:`keep_terms` (tests, benchmarks)
TERM_STATS = {"reads": 0, "hits": 0}
_TERM_SCOPE = Scope("ALAKAZAM_TERM_CACHE", _TERMS)


def keep_terms():
    """``with keep_terms():`` a term read again from an unchanged file inside the ``with`` is a copy of
    the sets read the first time, not a second read of the file (re-entrant; the outermost exit drops
    them; ``ALAKAZAM_TERM_CACHE=0`` turns it off).  A task that reads a table several times -- akfluxscale
    (its checks in the parameter pass, then the run: 3 reads), akexport (the parameter check, then the
    export), akinfo -- runs inside it (caltasks/task.py).  Unchanged: the same real path, size,
    modification and change times (ns), inode and device -- a table is only ever replaced by a new file
    (:class:`_AtomicFile`), so any write changes the inode; the state is taken before and after the
    read, and a read during which the file changed is not kept."""
    return _TERM_SCOPE.keep()


def _file_state(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def _copy_value(v):
    """A deep copy of a value read from a table (``copy.deepcopy``'s result, faster for the arrays,
    lists and dicts of a SolutionSet)."""
    import copy

    if isinstance(v, np.ndarray) and v.dtype.kind != "O":
        return v.copy(order="K")
    if isinstance(v, (str, bytes, int, float, bool, type(None), np.generic)) and \
            not (isinstance(v, np.generic) and v.dtype.kind == "O"):
        return v
    if type(v) is list:
        return [_copy_value(x) for x in v]
    if type(v) is dict:
        return {k: _copy_value(x) for k, x in v.items()}
    return copy.deepcopy(v)


def _copy_sets(sets: List[SolutionSet]) -> List[SolutionSet]:
    """Deep copies of the sets (a kept read handed out again: the caller may modify them)."""
    import dataclasses

    return [dataclasses.replace(s, **{f.name: _copy_value(getattr(s, f.name))
                                      for f in dataclasses.fields(s)}) for s in sets]


def read_term(path, key) -> List[SolutionSet]:
    """All solution sets of one key (exact key; use :func:`resolve_key` for fuzzy matching).  Inside
    :func:`keep_terms`, an unchanged file's key read before is a deep copy of what that read returned
    (the caller may modify it)."""
    if not _TERM_SCOPE.active():
        TERM_STATS["reads"] += 1
        return _read_term(path, key)
    real = os.path.realpath(str(path))
    state = _file_state(real)
    with _TERM_SCOPE.lock:
        kept = _TERMS.get((real, key))
        if state is not None and kept is not None and kept[0] == state:
            TERM_STATS["hits"] += 1
            return _copy_sets(kept[1])
    TERM_STATS["reads"] += 1
    sets = _read_term(path, key)
    if state is not None and _file_state(real) == state:
        with _TERM_SCOPE.lock:
            if _TERM_SCOPE.active():
                _TERMS[(real, key)] = (state, _copy_sets(sets))
    return sets


def _read_term(path, key) -> List[SolutionSet]:
    _check_file(path)
    with h5py.File(path, "r") as f:
        if key not in f:
            raise AlakazamError(f"jones key {key!r} not found in {path}; available: "
                                f"{', '.join(k for k in f.keys() if _KEY_RE.match(k))}")
        out = []
        for g in _leaf_groups(f[key]):
            try:
                s = _read_group(g)
                _check_read_set(s, key)
            except AlakazamError as e:
                raise AlakazamError(f"caltable: {path} group {g.name} is damaged: {e}") from None
            except (KeyError, ValueError, TypeError, OSError) as e:
                raise AlakazamError(f"caltable: {path} group {g.name} is damaged or not in the alakazam "
                                    f"layout ({type(e).__name__}: {e})") from None
            out.append(s)
        return out


_REQUIRED_ATTRS = ("jones_type", "field_name", "spw", "ant_names")


def _check_read_set(s: SolutionSet, key):
    """The attrs and shapes apply/fluxscale rely on (a corrupt table is an error, not a traceback)."""
    for a in _REQUIRED_ATTRS:
        if a not in s.attrs:
            raise AlakazamError(f"attribute {a!r} is missing")
    jt = str(s.attrs["jones_type"])
    m = _KEY_RE.match(key)
    if jt not in TYPE_ORDER or (m is not None and m.group(1) != jt):
        raise AlakazamError(f"attribute jones_type={jt!r} does not match key {key}")
    try:
        int(s.attrs["spw"])
        int(s.attrs.get("scan_id", 0))
    except (TypeError, ValueError):
        raise AlakazamError(f"attribute spw={s.attrs['spw']!r} / scan_id is not an integer") from None
    if not isinstance(s.attrs["ant_names"], list):
        raise AlakazamError(f"attribute ant_names={s.attrs['ant_names']!r} is not a list of names")
    s.validate("shapes")


def _fluxscale_group(e):
    return f"fluxscale/field_{str(e['field']).replace('/', '_')}/spw_{int(e['spw'])}"


def _write_fluxscale_entries(f, entries):
    for e in entries:
        e = dict(e)
        gname = _fluxscale_group(e)
        e.pop("field")
        e.pop("spw")
        if gname in f:
            del f[gname]
        g = f.require_group(gname)
        for k, v in e.items():
            if v is not None:
                g.attrs[k] = _encode_attr(v)


def write_fluxscale(path, entries: List[dict]):
    """Write fluxscale results (each: field, spw, scale_p, scale_q, scatter_p, scatter_q, ...)."""
    with _AtomicFile(path, drop=[_fluxscale_group(e) for e in entries]) as f:
        _write_fluxscale_entries(f, entries)


def read_fluxscale(path) -> List[dict]:
    _check_file(path)
    out = []
    with h5py.File(path, "r") as f:
        if "fluxscale" not in f:
            return out
        for fname, fg in f["fluxscale"].items():
            for sname, sg in fg.items():
                d = {"field": fname[len("field_"):], "spw": int(sname[len("spw_"):])}
                d.update({k: _decode_attr(v) for k, v in sg.attrs.items()})
                out.append(d)
    return out


def write_file(path, terms: Dict[str, List[SolutionSet]], fluxscale: Optional[List[dict]] = None,
               base: Optional[str] = None):
    """Atomically write several terms (and fluxscale entries) to ``path`` in one replace, starting from
    a copy of ``base`` (another table) when given, else of the current ``path``.

    When ``base`` is another table and ``path`` exists, the keys of ``path`` that neither ``base`` nor
    ``terms`` hold are kept (with the fluxscale results of those keys): only the keys written are
    replaced, as a solve does (:func:`write_terms`); :func:`keys_replaced_by_copy` lists both sets.
    """
    for key, sets in terms.items():
        _check_sets(key, sets)
    fluxscale = list(fluxscale or [])
    source = None
    if base is not None and os.path.realpath(base) != os.path.realpath(path):
        _check_file(base)
        source = base
    wid = _new_write_id()
    drop = list(terms) + [_fluxscale_group(e) for e in fluxscale]
    with _AtomicFile(path, drop=drop, source=source) as f:
        if source is not None and os.path.isfile(os.path.realpath(path)):
            _keep_other_keys(os.path.realpath(path), f, skip=set(terms))
        for key, sets in terms.items():
            _write_sets(f, key, sets)
            # every key written by one replace (one solve block, one fluxscale) carries the same write_id
            f[key].attrs["write_id"] = wid
        _write_fluxscale_entries(f, fluxscale)


def keys_replaced_by_copy(path, base, terms=()) -> Tuple[List[str], List[str]]:
    """``(replaced, kept)``: the keys of the existing table ``path`` that :func:`write_file` with
    ``base`` and ``terms`` replaces (those of ``base`` and ``terms``) and those it keeps."""
    if not os.path.isfile(path) or os.path.realpath(base) == os.path.realpath(path):
        return [], []
    have = list_keys(path)
    written = set(list_keys(base)) | set(terms)
    return [k for k in have if k in written], [k for k in have if k not in written]


def _keep_other_keys(old_path, f, skip):
    """Copy into ``f`` (a copy of another table) the term keys of ``old_path`` that ``f`` and ``skip``
    lack, and the fluxscale results of those keys whose group ``f`` lacks."""
    with h5py.File(old_path, "r") as old:
        kept = [k for k in old.keys() if _KEY_RE.match(k) and k not in f and k not in skip]
        for k in kept:
            old.copy(old[k], f, name=k)
        if "fluxscale" not in old:
            return
        for fname, fg in old["fluxscale"].items():
            for sname, sg in fg.items():
                gp = f"fluxscale/{fname}/{sname}"
                if gp not in f and _decode_attr(sg.attrs.get("jones_key", "")) in kept:
                    f.require_group(f"fluxscale/{fname}")
                    old.copy(sg, f[f"fluxscale/{fname}"], name=sname)


def remap_antennas(sset: SolutionSet, target_ant_names, hands=False):
    """Jones (n_target_ant, n_freq, n_time, 2, 2) and flags remapped by antenna name.

    Antennas absent from the table get NaN Jones and flags True.  ``hands=True``: the flags per hand
    (n_target_ant, n_freq, n_time, 2) of :meth:`SolutionSet.hand_flags` instead of ``flags``.
    """
    names = sset.ant_names
    n_f, n_t = sset.jones.shape[1:3]
    src = sset.hand_flags() if hands else sset.flags
    jones = np.full((len(target_ant_names), n_f, n_t, 2, 2), np.nan + 0j)
    flags = np.ones((len(target_ant_names),) + src.shape[1:], bool)
    for i, a in enumerate(target_ant_names):
        if a in names:
            j = names.index(a)
            jones[i] = sset.jones[j]
            flags[i] = src[j]
    return jones, flags


def summary(path) -> List[dict]:
    """One dict per solution group (for ``alakazam info`` / akinfo), of an alakazam table or of a CASA
    caltable (read as akplot and akapply read it: one key, io/solutions.py)."""
    from . import solutions

    rows = []
    for key in solutions.table_keys(path):
        # as listobs: scans (scan groups) in time order, each one's SPWs in ascending order -- not the
        # file's order of group names (scan '10' before '4') nor each set's own first time (a K's time
        # is its data's mean time, which differs per SPW: spw 1 came before spw 0 in some scans)
        for s in _listobs_order(solutions.read_term(path, key)):
            a = s.attrs
            ti = a.get("time_interval", a.get("solint_s"))
            rows.append(dict(
                key=key, jones_type=a.get("jones_type"), field=s.field_name, scan=s.scan_id,
                spw=s.spw, shape=tuple(s.jones.shape), n_ant=s.jones.shape[0],
                n_freq=s.jones.shape[1], n_time=s.jones.shape[2],
                flagged=float(np.mean(s.flags)) if s.flags.size else 0.0,
                # per hand (p, q) when the set has pol_flags (K, G: alakazam.core.handflags), else None;
                # a hand the MS does not record (attr hands, e.g. RR only) is None, not "all flagged"
                flagged_hands=_flagged_hands(s),
                backend=a.get("solver_backend"), ref_ant=a.get("ref_ant_name"),
                # (a CASA caltable's INTERVAL 0 is no solint -- CASA writes 0 for every one: '-')
                time_interval=None if s.converged is None and ti in (0, 0.0) else ti,
                freq_interval=a.get("freq_interval", a.get("freqint_hz")),
                # None: the table records no convergence (a CASA caltable)
                converged=(float(np.mean(s.converged)) if s.converged.size else 0.0)
                if s.converged is not None else None,
                # solutions (antenna, bin, time) not flagged but NaN/Inf on a hand that holds a value:
                # neither usable nor counted in `flagged` (hand-edited or foreign tables only)
                nonfinite=_nonfinite(s)))
    return rows


def _nonfinite(s) -> int:
    from ..core.handflags import nonfinite_unflagged, set_hands

    jt = s.attrs.get("jones_type")
    if jt is None or not s.flags.size:
        return 0
    return int(nonfinite_unflagged(jt, s.jones, s.delay, s.hand_flags(), set_hands(s)).sum())


def nonfinite_message(path, key, n, total, what="are not drawn") -> str:
    """The warning for ``n`` of ``total`` solutions of ``key`` that are NaN/Inf but not flagged."""
    return (f"{path}: {n} of {total} solutions of {key} are not finite (NaN/Inf) but not flagged; they "
            f"{what} (a table alakazam writes flags such solutions: was this one edited by hand or "
            "written by another program?)")


def _set_start(s):
    t = np.asarray(s.time, float)
    return float(np.nanmin(t)) if t.size and np.isfinite(t).any() else float("inf")


#: (scan group, field) starts closer than this (s) are one start: simultaneous scans (CASA's simulator
#: writes one scan per SPW, at the same times) whose solution times are weighted centroids a few ms apart
_SAME_START_S = 1.0


def _listobs_order(sets):
    """``sets`` of one key ordered as listobs orders a scan's rows: by the earliest time of their
    (scan group, field) -- ties by scan number, then field name -- and within it by SPW.  Starts within
    :data:`_SAME_START_S` of the previous one are ties (a K per scan is timed at its data's weighted
    centroid, which differs by milliseconds between the simultaneous scans of two SPWs: scan 2 was
    listed before scan 1 on a CASA-simulated MS)."""
    start = {}
    for s in sets:
        k = (int(s.scan_id), str(s.field_name))
        start[k] = min(start.get(k, float("inf")), _set_start(s))
    level, prev, lead = {}, None, None
    for k, t in sorted(start.items(), key=lambda kv: (kv[1], kv[0])):
        if prev is None or not t - prev < _SAME_START_S:
            lead = t
        level[k] = lead
        prev = t
    return sorted(sets, key=lambda s: (level[(int(s.scan_id), str(s.field_name))], int(s.scan_id),
                                       str(s.field_name), int(s.spw)))


def _flagged_hands(s):
    """Flagged fraction of each hand (p, q) of a set with pol_flags, None for a hand it does not record;
    None without pol_flags."""
    if s.pol_flags is None or not s.flags.size:
        return None
    from ..core.handflags import set_hands

    rec = set_hands(s)
    hf = s.hand_flags()
    return [float(np.mean(hf[..., h])) if h in rec else None for h in (0, 1)]


def summary_table(path):
    """rich Table of :func:`summary`."""
    from rich.table import Table

    from . import solutions

    title = f"{path}"
    if solutions.is_casa_table(path):
        from . import casatable

        title += f" (CASA caltable, {casatable.viscal(path)})"
    t = Table(title=title)
    cols = ["key", "field", "scan", "spw", "n_ant", "n_freq", "n_time", "flagged", "converged",
            "time_interval", "freq_interval", "ref_ant", "backend"]
    rows = summary(path)
    hands = any(r["flagged_hands"] is not None for r in rows)
    if hands:       # flags per hand in some group: the flagged fraction of each hand (p / q) too
        cols.insert(cols.index("flagged") + 1, "flagged p/q")
    if any(r["nonfinite"] for r in rows):       # NaN/Inf solutions not flagged: how many, per group
        cols.insert(cols.index("converged"), "NaN unflagged")
    for c in cols:
        t.add_column(c)
    for r in rows:
        vals = []
        for c in cols:
            if c == "flagged p/q":
                fh = r["flagged_hands"]
                vals.append("-" if fh is None else
                            " / ".join("-" if x is None else f"{100 * x:.1f}%" for x in fh))
                continue
            if c == "NaN unflagged":
                n = r["n_ant"] * r["n_freq"] * r["n_time"]
                vals.append(f"[bold red]{r['nonfinite']}/{n}[/bold red]" if r["nonfinite"] else "0")
                continue
            v = r[c]
            if v is None:
                vals.append("-")
                continue
            if c in ("flagged", "converged"):
                v = f"{100 * v:.1f}%"
            vals.append(str(v))
        t.add_row(*vals)
    return t


def resolve_ms(stored, table) -> Tuple[Optional[str], List[str]]:
    """``(path, tried)``: the Measurement Set recorded in a solution set of ``table`` (attr ``ms``).

    A solve records the absolute path; tables written before (and CASA caltables' MSName) hold it as
    typed, relative to the directory the solve ran in.  A relative path is looked for next to the table
    first (the usual layout: MS and table in one directory), then in the current directory, so that the
    answer does not depend on where a task runs.  ``path`` is None when none of ``tried`` (absolute
    paths) is a directory; a warning names the one used when both exist and differ.
    """
    stored = str(stored or "").strip()
    if not stored:
        return None, []
    stored = os.path.expanduser(stored)
    if os.path.isabs(stored):
        tried = [stored]
    else:
        tried = list(dict.fromkeys([os.path.join(os.path.dirname(os.path.abspath(str(table))), stored),
                                    os.path.abspath(stored)]))
    found = [p for p in tried if os.path.isdir(p)]
    if len({os.path.realpath(p) for p in found}) > 1:
        import logging

        logging.getLogger("alakazam.hdf5").warning(
            "%s records the MS %r; both %s and %s exist: using the one next to the table", table, stored,
            found[0], found[1])
    return (found[0] if found else None), tried


def same_ms(stored, table, ms) -> bool:
    """Whether the MS recorded in a solution set of ``table`` (attr ``ms``; ``table`` None: ``stored``
    as it is) is the Measurement Set ``ms``: the recorded path found as :func:`resolve_ms` finds it (a
    relative one next to the table first, then in the current directory) and compared by real path;
    a recorded MS found nowhere (moved or deleted since) by its directory name.  The one test of "the
    same MS" (apply's '(another MS)' warning, calibration/compat.py; append, io/solappend.py)."""
    target = os.path.realpath(os.path.expanduser(str(ms)))
    stored = str(stored or "").strip()
    if table is None:
        path = os.path.expanduser(stored) if os.path.isdir(os.path.expanduser(stored)) else None
    else:
        path = resolve_ms(stored, table)[0]
    if path is not None:
        return os.path.realpath(path) == target
    return os.path.basename(stored.rstrip("/")) == os.path.basename(target.rstrip("/"))
