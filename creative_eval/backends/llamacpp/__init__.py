"""llama.cpp: the GGUF engine steered by control vectors (`engine`), the control-vector file and layer mapping
(`cvec`), and the OpenAI-compatible server, plain or steered (`server`).

The engine's names are imported on first use: `python -m creative_eval.backends.llamacpp.server` (and its
`--help`) starts without torch, which only a steered server needs."""

from __future__ import annotations

from typing import Any

__all__ = ["BACKEND", "Engine", "LlamaCppError", "check_direction", "check_steering", "cvec_buffer", "generate",
           "is_gguf", "open_engine", "pick", "server_steering", "set_cvec", "steer_for", "stories"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from creative_eval.backends.llamacpp import engine

    return getattr(engine, name)
