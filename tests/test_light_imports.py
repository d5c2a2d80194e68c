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
