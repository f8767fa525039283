"""A CASA-style task callable built from its XML definition.

The Python signature (``inspect.signature(akcal)``), the defaults, the validation, ``help(akcal)``, the
shell's ``inp`` display and the YAML key mapping all come from ``tasks_xml/<task>.xml``.  Calling a task
validates every parameter first (all errors reported together in one
:class:`alakazam.errors.ParameterError`; an unknown keyword is one of them, with what to use instead
when it is CASA's name for something -- :mod:`caltasks.casa_hints` -- and the error is then also a
TypeError, :class:`alakazam.errors.UnknownParameterError`), logs
``##### Begin Task: <name>`` with the full call, runs the engine, logs the End line and returns the
result dict.  Runtime failures are logged as SEVERE and re-raised.  Called from Python with no logging
set up by the caller, the call's log goes to ``alakazam.log`` (:mod:`alakazam.tasklog`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re

from alakazam.errors import AlakazamError, ParameterError, UnknownParameterError
from alakazam import tasklog
from alakazam.core import warnonce
from alakazam.tasks_xml import xml_path

from .xmlschema import check_value, load_task

log = logging.getLogger("alakazam.tasks")


def ms_error(p, v):
    """Why the must-exist ``vis`` parameter ``p`` (a path or a list of paths) is not a Measurement Set
    (None: it is, or a path does not exist -- the XML check says that): a directory without table.dat,
    a file, a CASA caltable.  Checked with the other parameters, before the Begin line (it was found by
    the engine after it); the YAML runner's preflight asks the same for a block's ``ms``."""
    if p.name != "vis" or not p.mustexist:
        return None
    from alakazam.core.ms_io import check_ms

    bad = []
    for x in (v if isinstance(v, (list, tuple)) else [v]):
        if isinstance(x, str) and x and os.path.exists(os.path.expanduser(x)):
            try:
                check_ms(os.path.expanduser(x))
            except AlakazamError as e:
                bad.append(str(e).split(": ", 1)[-1])
    return "; ".join(bad) or None


def _kept(p, v):
    """What ``prepare`` checks the other parameters against when ``p`` is bad: its default, except for a
    must-exist list of paths (vis=[a.ms, missing.ms]): the paths that exist (and are MSs), so the
    selections are still checked against those MSs and reported with the missing one."""
    if p.mustexist and isinstance(v, (list, tuple)):
        have = [x for x in v if isinstance(x, str) and x and os.path.exists(os.path.expanduser(x))
                and not ms_error(p, x)]
        if have:
            return [os.path.expanduser(x) for x in have]
    return p.default


#: the last line of an inputs file: ``#<task>( name=value,... )`` (:meth:`Task.last_text`)
_CALL_LINE = re.compile(r"^#(\w+)\(")


def inputs_file_task(path, limit=1 << 20):
    """The task name of an inputs file (``<task>.last`` / ``.saved``, as :meth:`Task.last_text` writes:
    lines ``name = value`` and a last line ``#<task>( ... )``), or None for anything else (a directory,
    a binary file, a solution table, a log, a file larger than ``limit`` bytes)."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > limit:
            return None
        with open(path, encoding="utf-8") as fh:
            lines = [ln.rstrip("\n") for ln in fh if ln.strip()]
    except (OSError, UnicodeDecodeError):
        return None
    if not lines:
        return None
    m = _CALL_LINE.match(lines[-1])
    if m is None or not all("=" in ln and not ln.startswith("#") for ln in lines[:-1]):
        return None
    return m.group(1)


class Task:
    def __init__(self, name, body, prepare=None, keep_reads=False):
        """``prepare(params)`` turns validated parameters into the engine's input (and may raise
        ParameterError); it runs before the Begin line, so nothing is logged as run on bad input.
        ``body(prepared)`` runs the engine.  ``keep_reads``: the call (its checks and its run) reads
        each MS's metadata and each caltable key once while they are unchanged (:meth:`_kept_reads`),
        for tasks that read the same ones in both (akfluxscale, akexport, akinfo)."""
        self.name = name
        self.keep_reads = bool(keep_reads)
        self.spec = load_task(xml_path(name))
        self._body = body
        self._prepare = prepare
        self.__name__ = name
        self.__signature__ = inspect.Signature([
            inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default)
            for p in self.spec.params])
        lines = [f"{self.spec.short}", "", self.spec.description, "", "Parameters", "----------"]
        for p in self.spec.params:
            allowed = f" (one of: {', '.join(p.allowed)})" if p.allowed else ""
            lines.append(f"{p.name} : {p.type} = {p.default!r}{allowed}")
            lines.append(f"    {p.short}. {p.description}")
        if self.spec.example:
            lines += ["", "Example", "-------", self.spec.example]
        self.__doc__ = "\n".join(lines)

    # ---- parameters
    def bind(self, *args, **kwargs) -> dict:
        """Every parameter in XML order (unknown keywords -> TypeError naming them)."""
        try:
            ba = self.__signature__.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.name}() {e}") from None
        ba.apply_defaults()
        return dict(ba.arguments)

    def validate(self, params: dict, exists=None) -> dict:
        """Coerced parameters, or ParameterError listing every bad one (the XML checks only).
        ``exists(path)``: also true for a must-exist path (the YAML runner: written by an earlier block)."""
        from .casa_hints import value_hint

        out, errors = {}, {}
        for p in self.spec.params:
            v, err = check_value(p, params[p.name])
            if err and exists is not None and p.mustexist and isinstance(v, str) and exists(v):
                v, err = params[p.name], None
            if not err:
                err = ms_error(p, v)
            if err:
                hint = value_hint(self.name, p.name, params[p.name], p.allowed)
                errors.setdefault(p.name, []).append(f"{err}; {hint}" if hint else err)
            out[p.name] = v
        if errors:
            raise ParameterError(errors, task=self.name)
        return out

    def prepare(self, params: dict, exists=None):
        """Bound parameters -> (checked parameters, the engine's input) in ONE pass: the XML checks, then
        ``prepare`` (the engine's config builder, which knows per-step lists, intervals, Jones types,
        selections) on the parameters the XML did not reject -- those take their defaults there and
        what it says about them is dropped.  Every bad parameter is in the one ParameterError."""
        try:
            checked, errors = self.validate(params, exists), {}
        except ParameterError as e:
            errors = dict(e.errors)
            checked = {p.name: (params[p.name] if p.name not in errors else _kept(p, params[p.name]))
                       for p in self.spec.params}
        if self._prepare is None:
            if errors:
                raise ParameterError(errors, task=self.name)
            return checked, checked
        try:
            prepared = self._prepare(checked)
        except ParameterError as e:
            for k, v in e.errors.items():
                short = k[len(self.name) + 1:] if k.startswith(self.name + ".") else k
                base = short.split("[", 1)[0].split(".", 1)[0]
                if base not in errors:
                    errors.setdefault(k, []).extend(v)
            prepared = None
        except AlakazamError:
            if not errors:
                raise
        if errors:
            raise ParameterError(errors, task=self.name)
        return checked, prepared

    def check(self, params: dict) -> dict:
        """{name: error message} without raising (for the shell's colouring)."""
        bad = {}
        for p in self.spec.params:
            if p.name in params:
                _, err = check_value(p, params[p.name])
                if err:
                    bad[p.name] = err
        return bad

    # ---- .last files (CASA format)
    def last_text(self, params: dict) -> str:
        width = max(len(n) for n in self.spec.names)
        lines = [f"{n.ljust(width)} = {params[n]!r}" for n in self.spec.names]
        call = ",".join(f"{n}={params[n]!r}" for n in self.spec.names)
        lines.append(f"#{self.name}( {call} )")
        return "\n".join(lines) + "\n"

    def write_last(self, params: dict, path=None):
        """Write the inputs file (``<task>.last`` by default; tput, saveinputs, go).  An existing file is
        replaced only when it is an inputs file itself (:func:`inputs_file_task`): a solution table, a
        log or any other file of the user's is never overwritten (AlakazamError naming it)."""
        path = path or f"{self.name}.last"
        if os.path.lexists(path) and inputs_file_task(path) is None:
            raise AlakazamError(f"{path!r} exists and is not an inputs file (lines 'name = value' ending "
                                f"with '#task( ... )', as tput, saveinputs and go write); it is left as it "
                                f"is: give another file name")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(self.last_text(params))
        os.replace(tmp, path)
        return path

    # ---- call
    @warnonce.scoped          # a warning the call's checks would repeat is said once (core/warnonce.py)
    def __call__(self, *args, **kwargs):
        with tasklog.python_call(self.name):     # alakazam.log when the caller set up no logging
            unknown = [k for k in kwargs if k not in self.spec.names]
            if unknown or self._call_errors(args, kwargs)[2]:
                self.raise_unknown(unknown, args, {k: v for k, v in kwargs.items() if k not in unknown})
            with self._kept_reads():
                params, prepared = self.prepare(self.bind(*args, **kwargs))
                return self.run_prepared(params, prepared)

    def _kept_reads(self):
        """With ``keep_reads``: an MS's metadata read once while the MS is unchanged
        (alakazam/core/metacache.py) and a caltable key read once while the file is unchanged
        (:func:`alakazam.io.hdf5.keep_terms`), for the whole call; else nothing."""
        stack = contextlib.ExitStack()
        if self.keep_reads:
            from alakazam.core import metacache
            from alakazam.io import hdf5

            stack.enter_context(metacache.keep())
            stack.enter_context(hdf5.keep_terms())
        return stack

    def _call_errors(self, args, known):
        """(args, known, errors): what Python's binding would refuse -- more positional arguments than
        parameters, a parameter given both positionally and as a keyword -- as ParameterError entries,
        and the call without them (the positional value kept), so the rest is still checked."""
        names, errors = self.spec.names, {}
        if len(args) > len(names):
            errors["positional arguments"] = [f"{len(args)} given, but {self.name} has {len(names)} "
                                              f"parameters (help({self.name}) lists them in order)"]
            args = args[:len(names)]
        for i, n in enumerate(names[:len(args)]):
            if n in known:
                errors[n] = [f"given twice: positionally (argument {i + 1}) and as a keyword"]
        return args, {k: v for k, v in known.items() if k not in errors}, errors

    def raise_unknown(self, unknown, args, known):
        """UnknownParameterError (also a TypeError): the keywords ``unknown`` (what to use instead), the
        call's binding errors (too many positional arguments, a parameter given twice) and every bad
        one of the rest of the call (``args``, ``known``), together, before anything runs."""
        from .casa_hints import unknown_message

        yaml = self.names_for_messages()
        errors = {k: [unknown_message(self.name, self.spec.names, k, yaml)] for k in unknown}
        args, known, bind_errors = self._call_errors(args, known)
        errors.update(bind_errors)
        try:
            self.prepare(self.bind(*args, **known))
        except ParameterError as e:
            errors.update(e.errors)
        except AlakazamError:           # not about a parameter: the unknown keywords are the error
            pass
        raise UnknownParameterError(errors, task=self.name)

    def run_prepared(self, params: dict, prepared):
        """Run the engine on what :meth:`prepare` returned (the YAML runner checks every block first)."""
        call = ", ".join(f"{k}={v!r}" for k, v in params.items())
        log.info("##### Begin Task: %s #####", self.name)
        log.info("%s( %s )", self.name, call)
        try:
            result = self._body(prepared) if self._prepare else self._body(**params)
        except Exception as e:
            log.error("SEVERE %s: %s: %s", self.name, type(e).__name__, e)
            raise
        log.info("##### End Task: %s #####", self.name)
        return result

    def __repr__(self):
        return f"<alakazam task {self.name}: {self.spec.short}>"

    # ---- mapping to the engine's YAML-keyed dicts
    def yaml_dict(self, params: dict) -> dict:
        """Parameters -> a dict keyed like the YAML blocks (dotted yamlkeys nest)."""
        d = {}
        for p in self.spec.params:
            if not p.yamlkey:
                continue
            v = params[p.name]
            if "." in p.yamlkey:
                top, sub = p.yamlkey.split(".", 1)
                d.setdefault(top, {})[sub] = v
            else:
                d[p.yamlkey] = v
        return d

    def names_for_messages(self) -> dict:
        """yaml_key -> task parameter name, so engine errors name the task's parameters."""
        return {p.yamlkey: p.name for p in self.spec.params if p.yamlkey}
