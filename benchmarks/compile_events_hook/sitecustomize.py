"""benchmarks/compile_events.py's hook: with ALAKAZAM_COMPILE_EVENTS=DIR, this process appends one JSON line
per numba compile and per numba cache lookup to DIR/<pid>.jsonl (it listens only: nothing compiles or
runs differently).  Installed once numba is imported (a wrapper of ``__import__`` that removes itself)."""

import os

_DIR = os.environ.get("ALAKAZAM_COMPILE_EVENTS")
if _DIR:
    import atexit
    import builtins
    import json
    import sys
    import threading
    import time

    _fh = open(os.path.join(_DIR, f"{os.getpid()}.jsonl"), "a", buffering=1)
    _fh.write(json.dumps({"kind": "proc", "argv": sys.argv}) + "\n")
    _T0 = time.perf_counter()
    _LOCK = threading.Lock()

    def _write(rec):
        with _LOCK:
            _fh.write(json.dumps(rec) + "\n")

    def _setup():
        from numba.core import caching
        from numba.core import event as ev

        local = threading.local()

        class _Compiles(ev.Listener):
            def on_start(self, event):
                if not hasattr(local, "stack"):
                    local.stack = []
                local.stack.append([time.perf_counter(), time.process_time(), 0.0, 0.0])

            def on_end(self, event):
                stack = local.stack
                t0, c0, inner, llvm = stack.pop()
                dur = time.perf_counter() - t0
                if stack:
                    stack[-1][2] += dur
                    stack[-1][3] += llvm
                disp = event.data["dispatcher"]
                py = getattr(disp, "py_func", None)
                name = f"{py.__module__}.{py.__qualname__}" if py is not None else repr(disp)
                rec = {"kind": "compile", "fn": name, "sig": str(tuple(event.data["args"])), "dur": dur,
                       "excl": dur - inner, "cpu": time.process_time() - c0, "depth": len(stack),
                       "t": t0 - _T0, "llvm": llvm}
                try:        # numba's own breakdown (wall seconds, with the helpers compiled on the way)
                    md = disp.overloads[tuple(event.data["args"])].metadata or {}
                    passes = {}
                    for times in md.get("pipeline_times", {}).values():
                        for k, v in times.items():
                            k = k.split("_", 1)[-1]
                            passes[k] = passes.get(k, 0.0) + v.run
                    rec["typing"] = passes.get("nopython_type_inference", 0.0)
                    rec["lowering"] = passes.get("native_lowering", 0.0)
                    rec["inline"] = passes.get("inline_inlinables", 0.0) + passes.get("inline_overloads", 0.0)
                except Exception:       # noqa: BLE001 -- another numba: no breakdown
                    pass
                _write(rec)

        class _Llvm(ev.Listener):
            """wall seconds in LLVM (numba:llvm_lock), added to the compile that runs it"""

            def on_start(self, event):
                local.llvm_t0 = time.perf_counter()

            def on_end(self, event):
                stack = getattr(local, "stack", None)
                if stack and getattr(local, "llvm_t0", None) is not None:
                    stack[-1][3] += time.perf_counter() - local.llvm_t0
                local.llvm_t0 = None

        ev.register("numba:compile", _Compiles())
        ev.register("numba:llvm_lock", _Llvm())
        orig = caching.Cache.load_overload

        def load_overload(self, sig, target_context):
            t0 = time.perf_counter()
            r = orig(self, sig, target_context)
            _write({"kind": "load", "fn": str(getattr(self, "_name", "?")), "sig": str(sig),
                    "hit": r is not None, "dur": time.perf_counter() - t0, "t": t0 - _T0})
            return r

        caching.Cache.load_overload = load_overload

    _orig_import = builtins.__import__
    _done = []

    def _import(name, *args, **kwargs):
        m = _orig_import(name, *args, **kwargs)
        if not _done and hasattr(sys.modules.get("numba"), "njit") and \
                hasattr(sys.modules.get("numba.core.caching"), "Cache") and \
                hasattr(sys.modules.get("numba.core.event"), "register"):
            _done.append(True)
            builtins.__import__ = _orig_import
            try:
                _setup()
            except Exception as e:      # noqa: BLE001 -- another numba: record nothing
                _write({"kind": "error", "error": repr(e)})
        return m

    builtins.__import__ = _import

    @atexit.register
    def _end():
        t = os.times()
        _write({"kind": "end", "wall": time.perf_counter() - _T0, "cpu": time.process_time(),
                "children": t.children_user + t.children_system})
