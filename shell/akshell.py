"""akshell: an interactive CASA-style shell for the alakazam tasks (prompt_toolkit).

Parameters are plain variables of the shell's Python namespace, shared by all tasks, as in casashell::

    inp akcal            # show akcal's parameters (bare `inp` = the last task)
    vis = 'cal.ms'       # any Python statement
    go                   # run the last task with the current values (`go akcal` names it)
    tput akcal [file]    # save the values to akcal.last (saveinputs: to akcal.saved, as CASA)
    tget akcal [file]    # load akcal.last (else akcal.saved) into the namespace
    default akcal        # forget akcal's values
    help akcal / akcal?  # description and parameter table
    akcal(vis='x.ms')    # a Python call ignores the shell variables and leaves them unchanged

``go`` writes ``<task>.last`` before validating, so failed attempts are recorded too. A failing task
prints its own error and the shell keeps running.  Ctrl-C during ``go`` (or a task call) stops the
task and puts the MS and its output table back as they were before it (:mod:`alakazam.core.undo`);
the shell returns to the prompt with every parameter kept.  ``tget`` of a missing file says so and
changes nothing.  The log (Begin/End lines, solve summaries, apply lines) goes to the terminal and to
``akshell.log`` (``$AKSHELL_LOG``) as in casashell; progress bars are shown as in ``alakazam run``.
The command handling is the plain class
:class:`ShellSession` (feed it lines, read what it prints); :func:`main` wraps it in prompt_toolkit
with completion of tasks and parameters and a persistent history (``~/.akshell_history``, or
``$AKSHELL_HISTORY``).
"""

from __future__ import annotations

import ast
import logging
import os
import shutil
import sys
import textwrap
import traceback

from alakazam.caltasks import TASKS
from alakazam.errors import AlakazamError
from alakazam.caltasks.task import inputs_file_task

BLUE, RED, GREEN, BOLD, RESET = "\033[34m", "\033[31m", "\033[32m", "\033[1m", "\033[0m"
YELLOW = "\033[33m"
_MISSING = object()
_COMMANDS = ("inp", "go", "tget", "tput", "saveinputs", "default", "help")
#: IPython's shell habits that casashell users type: ``cd DIR``, ``pwd``, ``ls [args]`` (and ``!command``),
#: taken as such unless the name is a variable of the session
_MAGICS = ("cd", "pwd", "ls")
# output files a task writes (restored when it is interrupted); the MS is covered by the undo journal
_OUTPUT_PARAMS = {"akcal": ("caltable",), "akfluxscale": ("caltable", "fluxtable")}


def setup_logging(logfile=None, stream=None):
    """casashell-style logging: INFO lines to the terminal (through the rich console the progress bars
    use, or to ``stream``) and, with time stamps, to ``logfile``.  Returns the handlers installed on
    the root logger (remove them to undo)."""
    handlers = []
    if stream is None:
        from rich.logging import RichHandler

        from alakazam import progress

        h = RichHandler(console=progress.console(), show_path=False, show_time=False, markup=False,
                        rich_tracebacks=False)
    else:
        h = logging.StreamHandler(stream)
        h.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    h.setLevel(logging.INFO)
    from alakazam import progress

    h.addFilter(progress.not_file_only)          # (akflag's summary: printed already)
    handlers.append(h)
    if logfile:
        from alakazam.tasklog import file_handler

        handlers.append(file_handler(logfile, fmt="%(asctime)s\t%(levelname)s\t%(name)s\t%(message)s"))
    root = logging.getLogger()
    for x in handlers:
        root.addHandler(x)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handlers


def _run_interruptible(task, params):
    """Run ``task(**params)``; on Ctrl-C the MS and the output tables are restored, then the
    KeyboardInterrupt propagates (core/undo.py)."""
    from alakazam.core import undo

    def paths(v):        # (a bad value -- vis=3 -- is the task's ParameterError, not a TypeError here)
        if isinstance(v, (str, os.PathLike)):
            return [v] if str(v) else []
        if isinstance(v, (list, tuple)) and all(isinstance(x, (str, os.PathLike)) for x in v):
            return [x for x in v if str(x)]
        return []

    from alakazam.core import signals

    files = [f for n in _OUTPUT_PARAMS.get(task.name, ()) for f in paths(params.get(n))]
    with signals.sticky_interrupts(), undo.transaction(files=files, ms=paths(params.get("vis")) or None):
        res = task(**params)
        signals.checkpoint()        # a Ctrl-C a finalizer swallowed: the task is undone all the same
        return res


class _ShellTask:
    """A task as seen from the shell: a Python-style call also records ``<task>.last`` (as casashell
    does), then runs the task.  Everything else (signature, docstring, spec) is the task's own."""

    def __init__(self, task, session):
        self._task = task
        self._session = session
        self.__signature__ = task.__signature__
        self.__doc__ = task.__doc__
        self.__name__ = task.name

    def __call__(self, *args, **kwargs):
        params = self._task.bind(*args, **kwargs)
        try:
            self._task.write_last(params, self._session._path(f"{self._task.name}.last"))
        except (AlakazamError, OSError) as e:    # (a file of the user's by that name is left alone)
            self._session._p(f"inputs not saved ({e})")
        self._session._running = self._task.name      # for the interrupt message (handle)
        return _run_interruptible(self._task, params)

    def __getattr__(self, attr):
        return getattr(self._task, attr)

    def __repr__(self):
        return repr(self._task)


class ShellSession:
    """The akshell command handling, without a terminal: feed lines to :meth:`handle`.

    Parameters
    ----------
    out : file-like, optional
        Where output goes (default stdout).
    color : bool
        ANSI colours in ``inp``.
    cwd : str, optional
        Directory for ``.last`` files (default: the process working directory).
    logfile : str, optional
        Log file (relative to ``cwd``); with it the session installs its log handlers: INFO lines to
        ``out`` (to the rich console when ``out`` is None) and to the file.  :meth:`close` removes them.
    """

    def __init__(self, out=None, color=True, cwd=None, logfile=None):
        self.out = out or sys.stdout
        self.color = color
        self.cwd = cwd
        self.ns = {"__name__": "__akshell__"}
        self.ns.update({n: _ShellTask(t, self) for n, t in TASKS.items()})
        for cmd in _COMMANDS:
            self.ns[cmd] = getattr(self, "_py_" + cmd)
        self.last_task = "akcal"
        self._line_stopped = False      # go: the task failed or was interrupted (handle stops the line)
        self._chosen = False            # a command named or used a task (inp, go, default ...): notes on
        self._running = None
        self.debug = False              # akshell --debug: tracebacks of errors in typed Python
        self.logfile = self._path(logfile) if logfile else None
        self._handlers = setup_logging(self.logfile, None if out is None else self.out) if logfile else []

    def close(self):
        """Remove the log handlers this session installed."""
        root = logging.getLogger()
        for h in self._handlers:
            root.removeHandler(h)
            h.close()
        self._handlers = []

    # ---------------------------------------------------------------- helpers
    def _p(self, *a):
        print(*a, file=self.out)

    def _c(self, code, text):
        return f"{code}{text}{RESET}" if self.color else text

    def _task(self, name):
        if name is None:
            name = self.last_task
        name = getattr(name, "name", name)
        name = str(name).strip().strip("'\"")
        if name not in TASKS:
            raise AlakazamError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
        self.last_task = name
        self._chosen = True
        return TASKS[name]

    def _path(self, f):
        return os.path.join(self.cwd, f) if self.cwd and not os.path.isabs(f) else f

    def current(self, task, shown_only=False) -> dict:
        """Parameter values for ``go``: shell variable, else constraint default, else XML default.  A
        subparameter its parent's value does not enable -- hidden by ``inp`` -- takes its XML default,
        as in CASA's shell: ``mode='save'; versionname='x'; go``, then ``mode='list'; go`` lists (it
        failed on the hidden versionname 'x', a review).  The variable itself is kept: it is used again
        when its parent enables it."""
        spec = task.spec
        vals = {p.name: self.ns.get(p.name, p.default) for p in spec.params}
        sub_defaults = spec.active_subparams(vals)
        for p in spec.params:
            if p.subparam and p.name not in sub_defaults:
                vals[p.name] = p.default
            elif p.subparam and p.name not in self.ns:
                vals[p.name] = sub_defaults[p.name]
        return vals

    # ---------------------------------------------------------------- commands
    def inp(self, name=None):
        task = self._task(name)
        spec = task.spec
        vals = self.current(task)
        bad = task.check(vals)
        active = spec.active_subparams(vals)
        parents = set(spec.constraints)
        width = max(len(p.name) for p in spec.params)
        term = shutil.get_terminal_size((100, 20)).columns
        self._p(f"# {task.name} -- {spec.short}")
        for p in spec.params:
            if p.subparam and p.name not in active:
                continue
            v = vals[p.name]
            name = ("   " + p.name) if p.subparam else p.name
            lhs = f"{name.ljust(width + (3 if p.subparam else 0))} = {v!r}"
            if p.name in bad:
                lhs_c = self._c(RED, lhs)
            elif p.subparam:
                lhs_c = self._c(GREEN, lhs)
            elif v != p.default:
                lhs_c = self._c(BLUE, lhs)
            else:
                lhs_c = lhs
            if p.name in parents:
                lhs_c = self._c(BOLD, lhs_c)
            pad = " " * max(1, width + 24 - len(lhs))
            short = p.short         # the XML's allowed values, unless the description names them all
            if p.allowed and not all(a in p.short for a in p.allowed):
                short += f" ({' | '.join(p.allowed)})"
            desc = textwrap.wrap(short, max(20, term - len(lhs) - len(pad) - 2)) or [""]
            self._p(f"{lhs_c}{pad}# {desc[0]}")
            for d in desc[1:]:
                self._p(" " * (len(lhs) + len(pad)) + "# " + d)

    def go(self, name=None):
        task = self._task(name)
        vals = self.current(task)
        try:
            task.write_last(vals, self._path(f"{task.name}.last"))
        except (AlakazamError, OSError) as e:    # (a file of the user's by that name is left alone)
            self._p(self._c(RED, f"go: inputs not saved ({e})"))
        # a failed or interrupted task stops the rest of its line (handle: ``go akcal; go akapply`` never
        # applies after an akcal that failed or was stopped)
        try:
            res = _run_interruptible(task, vals)
        except KeyboardInterrupt:
            self._interrupted(task.name)
            self._line_stopped = True
            return None
        except (AlakazamError, TypeError) as e:
            self._p(self._c(RED, f"{task.name} failed: {e}"))
            self._line_stopped = True
            return None
        except Exception as e:  # the task's own error, not a shell error
            self._p(self._c(RED, f"{task.name} failed: {type(e).__name__}: {e}"))
            self._line_stopped = True
            return None
        return res

    def _interrupted(self, name):
        self._p(self._c(RED, f"{name} interrupted (Ctrl-C): stopped; the MS and the output table are as "
                             "before the task; parameters kept"))

    def tput(self, name=None, path=None, suffix="last", cmd="tput"):
        task = self._task(name)
        target = self._path(path or f"{task.name}.{suffix}")
        if os.path.isdir(target):
            raise AlakazamError(f"{cmd}: {target!r} is a directory; give a file name (e.g. "
                                f"{task.name}.{suffix})")
        try:
            f = task.write_last(self.current(task), target)
        except OSError as e:
            raise AlakazamError(f"{cmd}: cannot write {target!r} ({e.strerror}); nothing saved") from None
        except AlakazamError as e:
            raise AlakazamError(f"{cmd}: {e}; nothing saved") from None
        self._p(f"saved {task.name} inputs to {f}")

    def saveinputs(self, name=None, path=None):
        """CASA's saveinputs: the values to ``<task>.saved`` (tput: ``<task>.last``); tget reads
        ``<task>.last``, else ``<task>.saved``."""
        self.tput(name, path, suffix="saved", cmd="saveinputs")

    def tget(self, name=None, path=None):
        task = self._task(name)
        cands = [path] if path else [f"{task.name}.last", f"{task.name}.saved"]
        for c in cands:
            fp = self._path(c)
            if os.path.isdir(fp):
                raise AlakazamError(f"tget: {fp!r} is a directory, not a {task.name}.last file; parameters "
                                    "unchanged")
            if os.path.exists(fp):
                owner = inputs_file_task(fp)
                if owner is not None and owner != task.name:
                    raise AlakazamError(f"tget: {fp!r} holds {owner} inputs, not {task.name}'s; parameters "
                                        f"unchanged (tget {owner} {c} restores them)")
                names = set(task.spec.names)
                values, bad = {}, []
                try:
                    with open(fp) as fh:
                        for line in fh:
                            if line.startswith("#") or "=" not in line:
                                continue
                            k, v = line.split("=", 1)
                            k = k.strip()
                            if k in names:
                                try:
                                    values[k] = ast.literal_eval(v.strip())
                                except (ValueError, SyntaxError):
                                    bad.append(k)
                except (OSError, UnicodeDecodeError) as e:
                    raise AlakazamError(f"tget: cannot read {fp!r} ({e}); parameters unchanged") from None
                if not values and not bad:     # (a file of another task, or not a .last file at all)
                    raise AlakazamError(f"tget: {fp!r} holds no {task.name} parameters (expected lines "
                                        f"'name = value' as tput writes); parameters unchanged")
                self.ns.update(values)
                for k in bad:
                    self._p(self._c(RED, f"tget: cannot read {k} in {fp}"))
                self._p(f"restored {task.name} inputs from {fp}")
                return
        # nothing is changed: shared parameters (vis, field ...) belong to other tasks too
        if path:
            self._p(f"tget: no file {self._path(path)}; parameters unchanged")
        else:
            self._p(f"tget: no {' or '.join(cands)} in {self._path('.')}; parameters unchanged")

    def default(self, name=None):
        task = self._task(name)
        for n in task.spec.names:
            self.ns.pop(n, None)

    def help(self, name=None):
        task = self._task(name)
        self._p(task.__doc__)

    # Python-callable forms: inp(akcal), go(akcal), tget('akcal') ...
    def _py_inp(self, t=None):
        self.inp(t)

    def _py_go(self, t=None):
        return self.go(t)

    def _py_tget(self, t=None, f=None):
        self.tget(t, f)

    def _py_tput(self, t=None, f=None):
        self.tput(t, f)

    def _py_saveinputs(self, t=None, f=None):
        self.saveinputs(t, f)

    def _py_default(self, t=None):
        self.default(t)

    def _py_help(self, t=None):
        if t is None or isinstance(t, _ShellTask) or (isinstance(t, str) and t in TASKS):
            return self.help(t)
        import builtins

        return builtins.help(t)

    def completion_words(self):
        """Task names, shell commands and every task parameter name (for tab completion)."""
        words = set(TASKS) | set(_COMMANDS) | {"exit"}
        for t in TASKS.values():
            words.update(t.spec.names)
        return sorted(words)

    # ---------------------------------------------------------------- line handling
    def handle(self, line: str):
        s = line.strip()
        if not s:
            return None
        # statements separated by ';' where one is a command form (``mode='list'; go``, ``versionname='v';
        # go akflagmanager``): each run in turn, the rest left undone after an error (as a Python line)
        parts = _statements(s)
        if s.startswith("!") or not any(_is_command(p) or self._is_magic(p) for p in parts):
            parts = [s]         # ('!' runs the whole line in the system shell, ';' included)
        try:
            v = None
            for i, part in enumerate(parts):
                self._line_stopped = False
                v = self._dispatch(part)
                if self._line_stopped and i < len(parts) - 1:       # a task failed or was interrupted
                    rest = "; ".join(parts[i + 1:])
                    self._p(self._c(RED, f"not run (the task above stopped): {rest}"))
                    return None
            return v
        except KeyboardInterrupt:
            self._interrupted(self._running or "command")
        except AlakazamError as e:
            self._p(self._c(RED, str(e)))
        except Exception as e:           # a Python error in what was typed: Python's one line (akshell
            text = traceback.format_exc() if self.debug else traceback.format_exception_only(type(e), e)
            self._p(self._c(RED, "".join(text).rstrip()))          # --debug: the whole traceback)
            if isinstance(e, NameError):
                self._unset_parameter_note(getattr(e, "name", None))
        finally:
            self._running = None
        return None

    def _unset_parameter_note(self, name):
        """After a NameError on a task parameter's name (``vis`` after ``default akcal``, which removes the
        shell's values): what the task uses for it, its default."""
        task = TASKS.get(self.last_task) if self.last_task else None
        owners = [task] if task is not None and name in task.spec.names else \
            [t for t in TASKS.values() if name in t.spec.names]
        if not name or not owners:
            return
        t = owners[0]
        p = next(p for p in t.spec.params if p.name == name)
        self._p(self._c(YELLOW, f"note: {name} is not set in the shell: {t.name} uses its default, "
                                f"{name} = {p.default!r} (inp {t.name} shows every parameter; "
                                f"default {t.name} removes the values you set)"))

    def _dispatch(self, s):
        """One statement: a command form (``go``, ``inp akcal``, ``tput akcal mine.last``), a task's name
        (``akcal``, ``akcal?``) or Python."""
        words = s.split()
        cmd = words[0]
        arg = words[1] if len(words) > 1 else None
        arg2 = words[2].strip("'\"") if len(words) > 2 else None     # tput akcal 'mine.last'
        if s.endswith("?") and s[:-1].strip() in TASKS:
            return self.help(s[:-1].strip())
        if s.startswith("!"):                   # casashell's (IPython's) shell escape
            return self._system(s[1:].strip())
        if self._is_magic(s):
            return getattr(self, "_magic_" + cmd)(s[len(cmd):].strip())
        if _is_command(s):
            most = 3 if cmd in ("tget", "tput", "saveinputs") else 2
            if len(words) > most:           # (the extra words were ignored: 'go akflag x' ran akflag)
                raise AlakazamError(f"{cmd}: too many words in {s!r}; expected '{cmd} <task>"
                                    + (" [file]'" if most == 3 else "'") + "; nothing was done")
            fn = getattr(self, cmd)
            return fn(arg, arg2) if cmd in ("tget", "tput", "saveinputs") else fn(arg)
        if cmd in TASKS and len(words) == 1:
            self.last_task = cmd
            self._p(repr(TASKS[cmd]))
            return None
        return self._exec(s)

    def _is_magic(self, s) -> bool:
        """``s`` is ``cd ...``, ``pwd`` or ``ls ...`` (:data:`_MAGICS`) and its name no variable of the
        session (``pwd = 5`` makes one: Python from then on)."""
        words = s.split()
        if not words or words[0] not in _MAGICS or words[0] in self.ns:
            return False
        rest = s[len(words[0]):].strip()
        return not (rest.startswith("=") and not rest.startswith("=="))

    def _expand(self, text):
        """``$name`` / ``${name}`` of a session variable (a str or a number) replaced by its value, as
        IPython does in ``!`` lines and ``cd``; other names are left to the environment / the shell."""
        import re

        def one(m):
            if m.group(0) == "$$":              # IPython's escape: a literal $
                return "$"
            name = m.group(1) or m.group(2)
            v = self.ns.get(name)
            return str(v) if isinstance(v, (str, int, float, list, tuple)) and not isinstance(v, bool) \
                else m.group(0)

        return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", one, text)

    def _magic_cd(self, arg):
        """``cd DIR`` (``cd`` alone: home), as in casashell: the process's working directory, where the
        tasks resolve relative paths (and the session's, for its ``.last`` files)."""
        base = self.cwd or os.getcwd()
        arg = self._expand(arg.strip("'\""))
        if arg == "-":                  # the previous directory, as IPython's cd -
            if not getattr(self, "_oldpwd", None):
                raise AlakazamError("cd -: no previous directory yet")
            arg = self._oldpwd
        target = os.path.abspath(os.path.join(base, os.path.expandvars(os.path.expanduser(arg or "~"))))
        if not os.path.isdir(target):
            raise AlakazamError(f"cd: {target} is not a directory; still in {base}")
        os.chdir(target)
        self._oldpwd = base
        if self.cwd:
            self.cwd = target
        self._p(target)

    def _magic_pwd(self, arg):
        if arg:
            raise AlakazamError(f"pwd: takes no argument (got {arg!r})")
        self._p(self.cwd or os.getcwd())

    def _magic_ls(self, arg):
        return self._system(f"ls {arg}".strip())

    def _system(self, cmd):
        """``!command``: run in the system shell from the working directory; its output printed."""
        import subprocess

        if not cmd:
            raise AlakazamError("!: a shell command is expected after '!' (e.g. !ls)")
        cmd = self._expand(cmd)
        live = self.out is sys.stdout or self.out is sys.__stdout__     # a terminal: the command's own
        try:                                                           # (output as it comes, prompts seen)
            r = subprocess.run(cmd, shell=True, cwd=self.cwd or None, capture_output=not live, text=True)
        except KeyboardInterrupt:       # (not a task: nothing of alakazam's to put back)
            self._p(self._c(RED, f"!{cmd}: interrupted (Ctrl-C)"))
            return None
        text = "" if live else (r.stdout or "") + (r.stderr or "")
        if text.strip():
            self._p(text.rstrip("\n"))
        if r.returncode:
            self._p(self._c(RED, f"!{cmd}: exit status {r.returncode}"))
        return None

    def _hint_assignment(self, src):
        """After ``inp``/``default`` of a task, a variable set that is not one of its parameters but CASA's
        name for one (``gaintype``), a YAML file's name for one (``apply_parang``), or close to one
        (``refnat``), gets a note saying what the task uses: ``go`` would not see it
        (caltasks/casa_hints.py).  Other variables are the user's own."""
        from alakazam.caltasks.casa_hints import HINTS, unknown_message

        task = TASKS.get(self.last_task) if self.last_task and self._chosen else None
        if task is None:        # (before any inp / default / go: no task is the current one yet)
            return
        import difflib

        names = task.spec.names
        yaml = task.names_for_messages()        # a YAML file's names (apply_parang -> parang)
        others = {x for t in TASKS.values() for x in t.spec.names}
        for n in _assigned_names(src):
            if n in names:
                continue
            if n in others and n not in HINTS.get(task.name, {}):
                continue        # another task's parameter (mode: akflag's), set for it -- unless CASA's
                # version of the current task takes it and this one does not (akfluxscale antenna)
            if (n in HINTS.get(task.name, {}) or n in yaml
                    or difflib.get_close_matches(n, names, n=1, cutoff=0.8)):
                self._p(self._c(YELLOW, f"note: {n}: {unknown_message(task.name, names, n, yaml)}"))

    def _exec(self, src):
        try:
            code = compile(src, "<akshell>", "eval")
        except SyntaxError:
            exec(compile(src, "<akshell>", "exec"), self.ns)
            self._hint_assignment(src)
            return None
        v = eval(code, self.ns)
        if v is not None:
            self._p(repr(v))
        return v


def _is_command(s) -> bool:
    """``s`` is a shell command form: ``go``, ``inp akcal``, ``tget akcal mine.last`` (not a Python call
    or assignment of the same name: ``go('akcal')``, ``inp = 3``)."""
    words = s.split()
    return bool(words) and words[0] in _COMMANDS and \
        (len(words) == 1 or (words[1][0].isalpha() and "(" not in s and "=" not in s))


#: a line starting with one of these is one compound statement: a ';' in it belongs to its body
_COMPOUND = ("for", "while", "if", "with", "def", "class", "try", "async", "elif", "else", "except",
             "finally", "match")


def _statements(s) -> list:
    """The statements of a line separated by ';' outside strings and brackets (``spw='0:0~10;15~60'`` is
    one); the line whole when it starts a compound statement or does not tokenize."""
    import io
    import tokenize

    cuts, depth, first, end = [], 0, True, len(s)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(s).readline):
            if first and tok.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.NEWLINE):
                first = False
                if tok.type == tokenize.NAME and tok.string in _COMPOUND:       # (also 'if(x): a; go')
                    return [s]
            if tok.type == tokenize.COMMENT and tok.start[0] == 1:
                end = tok.start[1]          # 'x = 1; go akflagmanager  # list': the comment is no word
                break
            if tok.type == tokenize.OP:
                if tok.string in "([{":
                    depth += 1
                elif tok.string in ")]}":
                    depth -= 1
                elif tok.string == ";" and depth == 0 and tok.start[0] == 1:
                    cuts.append(tok.start[1])
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [s]
    out, lo = [], 0
    for c in cuts + [end]:
        part = s[lo:c].strip()
        if part:
            out.append(part)
        lo = c + 1
    return out or [s]


def _assigned_names(src):
    """The plain names a statement assigns (``gaintype = 'K'``, ``a = b = 1``), else none."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return []
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)]


def main(argv=None):
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory

    shell = ShellSession(logfile=os.environ.get("AKSHELL_LOG", "akshell.log"))
    shell.debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    hist = os.environ.get("AKSHELL_HISTORY", os.path.expanduser("~/.akshell_history"))
    session = PromptSession(history=FileHistory(hist),
                            completer=WordCompleter(shell.completion_words()))
    print("akshell -- alakazam tasks: " + ", ".join(TASKS) + "   (inp <task>, go, help <task>, exit)")
    print(f"log: {os.path.abspath(shell.logfile)}")
    while True:
        try:
            line = session.prompt("akshell> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if line.strip() in ("exit", "quit", "exit()", "quit()"):
            break
        try:
            shell.handle(line)
        except KeyboardInterrupt:            # between a task's end and the prompt
            print("KeyboardInterrupt")
    shell.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
