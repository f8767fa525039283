"""alakazam.flagging imports its engine on first use of run_flag, not with the package (the tasks and
the YAML schema import the package; a solve + apply never flags)."""

import os
import subprocess
import sys

SCRIPT = r"""
import sys
import alakazam.flagging as f
from alakazam.flagging import FlagConfig, MODES, flag_config_from_dict
print("engine_after_import", "alakazam.flagging.engine" in sys.modules)
from alakazam.flagging import run_flag
from alakazam.flagging.engine import run_flag as direct
names = ["FlagConfig", "MODES", "flag_config_from_dict", "run_flag"]
print("same", run_flag is direct is f.run_flag, "all", sorted(f.__all__) == sorted(names))
try:
    f.no_such_name
except AttributeError:
    print("attrerror True")
"""


def test_engine_imported_on_first_use():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split()
    assert lines[lines.index("engine_after_import") + 1] == "False"
    assert lines[lines.index("same") + 1] == "True" and lines[lines.index("all") + 1] == "True"
    assert lines[lines.index("attrerror") + 1] == "True"
