"""The steering setting, which every command line reads, loads without torch: checked in a fresh interpreter."""

import subprocess
import sys


def test_steering_settings_import_without_torch():
    code = ("import sys, creative_eval.steering.settings, creative_eval.steering; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_steering_hooks_still_importable_from_package():
    from creative_eval.steering import Steer, scale, steering
    from creative_eval.steering.hooks import Steer as HookSteer

    assert Steer is HookSteer and callable(scale) and callable(steering)


def test_every_command_help_imports_no_torch():
    """`--help` of every command parses before anything heavy loads (a test of what is imported, not a timing)."""
    code = """
import contextlib, io, sys
from creative_eval.cli.main import build_parser
parser = build_parser()
sub = next(a for a in parser._actions if a.dest == "command")
for name in sub.choices:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        parser.parse_args([name, "--help"])
print(len(sub.choices), sorted(m for m in ("torch", "transformers", "sklearn", "lm_eval") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= 10 and out[1:] == ["[]"]
