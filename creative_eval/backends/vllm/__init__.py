"""vLLM: the engine in its own process and environment, steered in every worker (`engine`, the project side;
`runner`, the process in vLLM's environment; `hook`, what each vLLM worker runs).

Nothing is imported here: `runner` and `hook` are imported inside vLLM's environment, which has neither the
project's dependencies nor its transformers, so the project side loads on first use
(`from creative_eval.backends import vllm; vllm.Engine(...)`).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BACKEND", "Engine", "PYTHON_ENV", "VLLMError", "check_direction", "check_steering", "generate",
           "max_model_len", "python", "request_seed", "resume", "source_of", "steer_for", "story_batches",
           "tokenizer_of", "vllm_layer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("creative_eval.backends.vllm.engine"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
