"""Makes `lm_eval --model steered_hf|steered_vllm --tasks creative` work on lm-eval 0.4.x, which has no plugin
discovery.

The `creative_eval_lm_eval.pth` file shipped in the wheel imports this module at interpreter start. It only
adds an import finder (no heavy imports): when lm-eval's own modules load, the finder registers the lazy
`steered_hf` and `steered_vllm` targets and adds the `creative` task folder to every TaskManager that includes
the default tasks.
Newer lm-eval versions find the model through the `lm_eval.models` entry point instead; both are idempotent.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

MODEL_NAME = "steered_hf"
MODEL_TARGET = "creative_eval.harness.model:SteeredHF"
VLLM_MODEL_NAME = "steered_vllm"
MODELS = {MODEL_NAME: MODEL_TARGET, VLLM_MODEL_NAME: "creative_eval.harness.vllm_model:SteeredVLLM"}


def task_dir() -> Path:
    """The task YAMLs, shipped inside the package."""
    return Path(__file__).resolve().parent / "task_files"


def register_model(registry: ModuleType) -> None:
    for name, target in MODELS.items():
        if name not in registry.model_registry:
            registry.model_registry.register(name, target=target)


def add_task_dir(manager: ModuleType) -> None:
    """Wrap TaskManager.__init__ so our tasks come right after lm-eval's and before any --include_path."""
    cls = manager.TaskManager
    if getattr(cls.__init__, "_creative_eval", False):
        return
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        if bound.arguments.get("include_defaults", True):
            paths = bound.arguments.get("include_path")
            paths = [] if paths is None else list(paths) if isinstance(paths, (list, tuple)) else [paths]
            if task_dir() not in map(Path, paths):
                bound.arguments["include_path"] = [task_dir(), *paths]
        init(*bound.args, **bound.kwargs)

    __init__._creative_eval = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


AFTER: dict[str, Callable[[ModuleType], None]] = {
    "lm_eval.api.registry": register_model,
    "lm_eval.tasks.manager": add_task_dir,
}


class _Loader(importlib.abc.Loader):
    """Runs the real loader, then our patch; everything else is delegated."""

    def __init__(self, loader: importlib.abc.Loader, after: Callable[[ModuleType], None]):
        self.loader, self.after = loader, after

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.after(module)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in AFTER:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, AFTER[name])
        return spec


def install() -> None:
    """Idempotent; patches modules already imported, and later imports through the finder."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name, after in AFTER.items():
        if name in sys.modules:
            after(sys.modules[name])


install()
