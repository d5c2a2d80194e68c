"""llama.cpp: the GGUF engine steered by control vectors (`engine`), the control-vector file and layer mapping
(`cvec`), and the OpenAI-compatible server, plain or steered (`server`)."""

from creative_eval.backends.llamacpp.engine import (BACKEND, Engine, LlamaCppError, check_direction, check_steering,
                                                    cvec_buffer, generate, is_gguf, open_engine, pick,
                                                    server_steering, set_cvec, steer_for, stories)

__all__ = ["BACKEND", "Engine", "LlamaCppError", "check_direction", "check_steering", "cvec_buffer", "generate",
           "is_gguf", "open_engine", "pick", "server_steering", "set_cvec", "steer_for", "stories"]
