"""Read CASA-schema task XML (tasks_xml/*.xml) into parameter specs, and coerce/validate values the
way CASA does (bool rejects int, int rejects float, double accepts int, a scalar given for a *Vec
becomes a one-element list, enums, ranges, paths that must exist)."""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

NS = {"c": "http://casa.nrao.edu/schema/psetTypes.html"}
_MISSING = object()


@dataclass
class ParamSpec:
    name: str
    type: str
    default: Any
    short: str = ""
    description: str = ""
    allowed: Optional[List[str]] = None
    ignorecase: bool = False
    vmin: Optional[float] = None
    vmin_exclusive: bool = False            # <value range="min" exclusive="true">0</value>: value > vmin
    vmax: Optional[float] = None
    vmaxpercpu: Optional[float] = None      # <value range="max" percpu="true">k</value>: k x usable_cpus()
    subparam: bool = False
    mustexist: bool = False
    yamlkey: Optional[str] = None
    limittypes: List[str] = field(default_factory=list)


@dataclass
class TaskSpec:
    name: str
    short: str
    description: str
    params: List[ParamSpec]
    constraints: Dict[str, Dict[str, Dict[str, Any]]]   # parent -> value -> {sub: default}
    example: str = ""

    def param(self, name) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> List[str]:
        return [p.name for p in self.params]

    def active_subparams(self, values: dict) -> Dict[str, Any]:
        """Subparameters enabled by the current parent values -> their constraint defaults."""
        out = {}
        for parent, cases in self.constraints.items():
            v = values.get(parent, self.param(parent).default)
            for val, subs in cases.items():
                if str(v).lower() == str(val).lower():
                    out.update(subs)
        return out


def _text(el, tag):
    x = el.find(f"c:{tag}", NS)
    return " ".join((x.text or "").split()) if x is not None and x.text else ""


def _convert(text, typ, vtype=None):
    t = vtype or typ
    if t in ("bool",):
        return str(text).strip().lower() == "true"
    if t == "int":
        return int(text)
    if t == "double":
        return float(text)
    return "" if text is None else str(text).strip()


def _default(pel, typ):
    v = pel.find("c:value", NS)
    if v is None:
        return "" if not typ.endswith("Vec") else []
    if typ.endswith("Vec"):
        inner = v.findall("c:value", NS)
        base = typ[:-3]
        return [_convert(x.text or "", base) for x in inner]
    vtype = v.get("type")
    if typ == "any":
        if vtype and vtype.endswith("Vec"):
            return [_convert(x.text or "", vtype[:-3]) for x in v.findall("c:value", NS)]
        return _convert(v.text or "", "string", vtype)
    return _convert(v.text or "", typ)


@functools.lru_cache(maxsize=None)
def load_task(path) -> TaskSpec:
    root = ET.parse(path).getroot()
    task = root.find("c:task", NS)
    params = []
    inp = task.find("c:input", NS)
    for pel in inp.findall("c:param", NS):
        typ = pel.get("type")
        ps = ParamSpec(name=pel.get("name"), type=typ, default=_default(pel, typ),
                       short=_text(pel, "shortdescription"), description=_text(pel, "description"),
                       subparam=pel.get("subparam", "false").lower() == "true",
                       mustexist=pel.get("mustexist", "false").lower() == "true", yamlkey=pel.get("yamlkey"))
        a = pel.find("c:any", NS)
        if a is not None:
            ps.limittypes = (a.get("limittypes") or "").split()
        al = pel.find("c:allowed", NS)
        if al is not None:
            if al.get("kind") == "enum":
                ps.allowed = [x.text or "" for x in al.findall("c:value", NS)]
                ps.ignorecase = al.get("ignorecase", "false").lower() == "true"
            elif al.get("kind") == "range":
                for x in al.findall("c:value", NS):
                    if x.get("range") == "min":
                        ps.vmin = float(x.text)
                        ps.vmin_exclusive = x.get("exclusive", "false").lower() == "true"
                    elif x.get("range") == "max" and x.get("percpu", "false").lower() == "true":
                        ps.vmaxpercpu = float(x.text)
                    elif x.get("range") == "max":
                        ps.vmax = float(x.text)
        params.append(ps)
    constraints = {}
    cel = inp.find("c:constraints", NS)
    if cel is not None:
        for w in cel.findall("c:when", NS):
            cases = {}
            for eq in w.findall("c:equals", NS):
                subs = {}
                for d in eq.findall("c:default", NS):
                    v = d.find("c:value", NS)
                    subs[d.get("param")] = _convert(v.text if v is not None else "", "string",
                                                    v.get("type") if v is not None else None)
                cases[eq.get("value")] = subs
            constraints[w.get("param")] = cases
    return TaskSpec(task.get("name"), _text(task, "shortdescription"),
                    (task.find("c:description", NS).text or "").strip(),
                    params, constraints, (_text(task, "example")))


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask; else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_cap_error(p: ParamSpec, vals):
    """A process count above ``vmaxpercpu`` per usable core (nproc, workers): refused, naming the
    machine's cores -- nproc=10000 started 10000 processes; more than a few per core only compete."""
    n = usable_cpus()
    cap = int(p.vmaxpercpu * n)
    for x in vals:
        if isinstance(x, (int, float)) and not isinstance(x, bool) and x > cap:
            return (f"max value is {cap} ({p.vmaxpercpu:g} per CPU core; this machine has {n} usable CPU "
                    f"core{'s' if n != 1 else ''}), got {x!r}")
    return None


#: the largest value of an integer parameter without a smaller XML maximum
INT64_MAX = 2 ** 63 - 1


def fmt_bound(x) -> str:
    """A range bound as written in messages and the README tables: 1000000, not 1e+06."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return f"{x:g}" if isinstance(x, float) else str(x)


def range_text(lo, hi) -> str:
    """' (allowed range: lo to hi)' for a parameter's error message ('' with one bound: the message
    says it)."""
    if lo is None or hi is None:
        return ""
    return f" (allowed range: {fmt_bound(lo)} to {fmt_bound(hi)})"


def _int64(bound, p) -> str:
    """' (a 64-bit integer)' when ``bound`` is the implicit int64 bound, not the XML's."""
    return " (a 64-bit integer)" if bound not in (p.vmin, p.vmax) else ""


_PY = {"string": str, "path": str, "bool": bool, "int": int, "double": float}


def check_value(p: ParamSpec, v, paths=True):
    """(coerced value, error message or None) for one parameter; ``paths=False``: a must-exist path is
    not looked up (alakazam.schema: YAML values, checked for existence by the runner's preflight)."""
    def scalar(x, typ):
        if typ in ("string", "path"):
            if not isinstance(x, str):
                return x, f"must be of cStr type, got {type(x).__name__} {x!r}"
            return x, None
        if typ == "bool":
            if not isinstance(x, bool):
                return x, f"must be of cBool type (True/False), got {x!r}"
            return x, None
        if typ == "int":
            if isinstance(x, bool) or not isinstance(x, int):
                return x, f"must be of cInt type, got {x!r}"
            return x, None
        if typ == "double":
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                return x, f"must be of cFloat type, got {x!r}"
            if x != x:              # NaN is never a meaningful parameter value
                return x, f"must be a number, got {x!r}"
            return float(x), None
        return x, None

    if p.type.endswith("Vec"):
        base = p.type[:-3]
        if not isinstance(v, (list, tuple)):
            v = [v] if v != "" else []
        out = []
        for x in v:
            y, err = scalar(x, base)
            if err:
                return v, err.replace("must be", "elements must be")
            out.append(y)
        v = out
    elif p.type == "any":
        if p.limittypes:
            ok = False
            for lt in p.limittypes:
                if lt.endswith("Vec") and isinstance(v, (list, tuple)) and all(
                        scalar(x, lt[:-3])[1] is None for x in v):
                    ok = True
                elif not lt.endswith("Vec") and scalar(v, lt)[1] is None:
                    ok = True
            if not ok:
                return v, f"must be one of the types {', '.join(p.limittypes)}, got {v!r}"
    else:
        v, err = scalar(v, p.type)
        if err:
            return v, err
    if p.allowed is not None:
        vals = v if isinstance(v, list) else [v]
        for x in vals:
            cand = [a.lower() for a in p.allowed] if p.ignorecase else p.allowed
            if (x.lower() if p.ignorecase and isinstance(x, str) else x) not in cand:
                return v, f"unallowed value {x!r} (allowed: {', '.join(p.allowed)})"
    lo, hi = p.vmin, p.vmax
    if p.type in ("int", "intVec"):     # an integer parameter is a 64-bit integer (numba, casacore):
        lo = -INT64_MAX - 1 if lo is None else lo       # 10**30 passed this check and crashed in the
        hi = INT64_MAX if hi is None else hi            # solver (numba TypingError)
    if lo is not None or hi is not None:
        rng = range_text(p.vmin, p.vmax)            # (the XML's range; an int64 bound says so itself)
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                if x in (float("inf"), float("-inf")):      # a bounded parameter is finite
                    return v, f"must be finite, got {x!r}{rng}"
                if lo is not None and p.vmin_exclusive and x <= lo:     # (the XML's min only)
                    return v, f"must be > {fmt_bound(lo)}, got {x!r}{rng}"
                if lo is not None and x < lo:
                    return v, f"min value is {fmt_bound(lo)}, got {x!r}{rng or _int64(lo, p)}"
                if hi is not None and x > hi:
                    return v, f"max value is {fmt_bound(hi)}, got {x!r}{rng or _int64(hi, p)}"
    if p.vmaxpercpu is not None:
        err = _cpu_cap_error(p, v if isinstance(v, list) else [v])
        if err:
            return v, err
    if p.type == "path" and isinstance(v, str):     # '~' as in the input paths, also for outputs and in
        v = os.path.expanduser(v)                   # YAML ('~/plots' made a './~'; no file is looked up)
    if p.type == "pathVec":
        v = [os.path.expanduser(x) if isinstance(x, str) else x for x in v]
    if p.type == "any" and p.mustexist:             # vis: a path or a list of paths
        v = [os.path.expanduser(x) if isinstance(x, str) else x for x in v] \
            if isinstance(v, (list, tuple)) else os.path.expanduser(v) if isinstance(v, str) else v
    empty = v is None or (isinstance(v, str) and not v.strip())
    if paths and p.mustexist and p.type in ("path", "any") and empty:
        return v, f"the {p.name} parameter is required (a path that exists; none was given)"
    if paths and p.mustexist and p.type == "path":
        v = os.path.expanduser(v)
        if not v or not os.path.exists(v):
            return v, f"the {p.name} parameter must be a path that exists ({v!r} does not exist)"
    if paths and p.mustexist and p.type == "any":   # a path or a list of paths (e.g. vis: several MSs)
        many = isinstance(v, (list, tuple))
        v = [os.path.expanduser(x) for x in v] if many else os.path.expanduser(v)
        missing = [x for x in (v if many else [v]) if not x or not os.path.exists(x)]
        if missing:                                 # every missing path of a list, in one message
            what = ", ".join(repr(x) for x in missing)
            return v, (f"the {p.name} parameter must be a path that exists ({what} "
                       f"{'does' if len(missing) == 1 else 'do'} not exist)")
        if many and not v:
            return v, f"the {p.name} parameter must be a path or a non-empty list of paths"
    return v, None
