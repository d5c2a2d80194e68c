"""Inside every vLLM worker: lambda * a added to the output of one decoder block.

vLLM mixes `SteeringExtension` into its worker class in every worker process it starts (its
`worker_extension_cls`), one per tensor- and pipeline-parallel rank, and the runner calls the methods below on
all of them at once with `collective_rpc` by name (no function is pickled). Each worker registers a forward hook
on its own copy of the block: a tensor-parallel rank adds the vector to its replica of the stream, a
pipeline-parallel rank that does not hold the block reports so and adds nothing.

vLLM's Llama-style decoder layer returns (hidden_states, residual) and the next layer's fused norm adds the two,
so the stream after block l is their sum: adding the vector to the first adds it to the stream. Index i here is
`model.model.layers[i]`, counted from 0: our layer l (the output of block l counted from 1, HF
`hidden_states[l]`) is index l - 1 (`engine.vllm_layer`, measured in tests/test_vllm.py).

The steered server (`server`) has no runner to call these methods: it names a vector file in `STEER_ENV`, and
each worker installs it at its model's first forward (`steer_from_env`, run when vLLM imports this module).

This module imports torch (and `runner`, for a name) only: it runs in vLLM's environment, not the project's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from creative_eval.backends.vllm.runner import STEER_ENV

ATTR = "_creative_eval_steering"
LAYER_PATHS = ("model.layers", "model.model.layers", "language_model.model.layers", "transformer.h",
               "model.decoder.layers")


def blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a vLLM model (Llama-style `model.layers` and the others vLLM names alike)."""
    for path in LAYER_PATHS:
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise TypeError(f"cannot find the decoder blocks of {type(model).__name__}")


class _Steer:
    """The installed injection of one worker: the vector, its hook and how many forwards it reached."""

    def __init__(self, index: int, vector: torch.Tensor, handle: Any):
        self.index, self.vector, self.handle, self.calls, self.tokens = index, vector, handle, 0, 0


def _add(state: _Steer):
    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        h = output[0] if isinstance(output, tuple) else output
        state.calls += 1
        state.tokens += int(h.shape[0]) if h.dim() == 2 else int(h.shape[0] * h.shape[1])
        if state.vector.dtype != h.dtype or state.vector.device != h.device:
            state.vector = state.vector.to(h.device, h.dtype)  # once: the stream's dtype and device
        h = h + state.vector
        return (h, *output[1:]) if isinstance(output, tuple) else h

    return hook


def install(model: nn.Module, index: int | None, vector: Sequence[float] | None) -> dict[str, Any]:
    """Replace this worker's steering: the vector at block `index`, or none (index None). The previous hook is
    removed first, so at most one is ever installed."""
    old: _Steer | None = getattr(model, ATTR, None)
    if old is not None:
        old.handle.remove()
        setattr(model, ATTR, None)
    if index is not None:
        layers = blocks(model)
        if not 0 <= index < len(layers):
            raise ValueError(f"block index {index} is out of range: this model has blocks 0..{len(layers) - 1}")
        block = layers[index]
        if type(block).__name__ != "PPMissingLayer":  # another pipeline stage holds it
            tensor = torch.tensor(list(vector or ()), dtype=torch.float32)
            width = getattr(getattr(model, "config", None), "hidden_size", tensor.shape[0])
            if tensor.shape != (width,):
                raise ValueError(f"the vector has {tensor.shape[0]} values, the model's hidden size is {width}")
            state = _Steer(index, tensor, None)
            state.handle = block.register_forward_hook(_add(state))
            setattr(model, ATTR, state)
    return status(model)


def status(model: nn.Module) -> dict[str, Any]:
    """What this worker holds: its process, its ranks, the installed block index and the hook's call count."""
    state: _Steer | None = getattr(model, ATTR, None)
    return {"pid": os.getpid(), **_ranks(), "index": None if state is None else state.index,
            "norm": None if state is None else float(state.vector.float().norm()),
            "calls": 0 if state is None else state.calls, "tokens": 0 if state is None else state.tokens}


def _ranks() -> dict[str, int]:
    try:
        from vllm.distributed import parallel_state as ps

        return {"tp_rank": ps.get_tensor_model_parallel_rank(), "pp_rank": ps.get_pp_group().rank_in_group}
    except Exception:  # outside an initialised vLLM worker (unit use)
        return {"tp_rank": 0, "pp_rank": 0}


def capture(model: nn.Module, on: bool) -> bool:
    """Keep (or stop keeping) the logits of each forward's sampled positions: `captured` returns the last ones.
    The parity test reads the whole vocabulary this way; vLLM's own logprobs are far slower at that width."""
    handle = getattr(model, ATTR + "_capture", None)
    if handle is not None:
        handle.remove()
        setattr(model, ATTR + "_capture", None)
    model._creative_eval_logits = None
    head = getattr(model, "logits_processor", None)
    if on and head is not None:  # only the stage that computes logits has one
        def keep(_module: nn.Module, _args: Any, output: Any) -> None:
            if output is not None:
                model._creative_eval_logits = output.detach().float().cpu()

        setattr(model, ATTR + "_capture", head.register_forward_hook(keep))
    return head is not None


def captured(model: nn.Module) -> list[list[float]] | None:
    """log-softmax of the last kept logits, one row per sampled position (None where this rank has none)."""
    logits = getattr(model, "_creative_eval_logits", None)
    return None if logits is None else torch.log_softmax(logits.double(), -1).tolist()


def timing(model: nn.Module, on: bool) -> dict[str, Any]:
    """Time the model's forwards in this worker (a short profile: how much of the wall time is the model itself).
    Turning it on starts from zero; turning it off returns the totals (forwards, seconds, tokens)."""
    import time

    old = getattr(model, ATTR + "_timing", None)
    totals = {"forwards": 0, "seconds": 0.0, "tokens": 0}
    if old is not None:
        for handle in old["handles"]:
            handle.remove()
        totals = old["totals"]
    if on:
        totals = {"forwards": 0, "seconds": 0.0, "tokens": 0}
        clock: dict[str, float] = {}

        def before(_module: nn.Module, args: Any, kwargs: dict) -> None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            totals["tokens"] += int(ids.numel()) if ids is not None else 0
            clock["start"] = time.perf_counter()

        def after(_module: nn.Module, _args: Any, _kwargs: dict, _output: Any) -> None:
            totals["forwards"] += 1
            totals["seconds"] += time.perf_counter() - clock.pop("start", time.perf_counter())

        handles = [model.register_forward_pre_hook(before, with_kwargs=True),
                   model.register_forward_hook(after, with_kwargs=True)]
        setattr(model, ATTR + "_timing", {"handles": handles, "totals": totals})
    else:
        setattr(model, ATTR + "_timing", None)
    return {"pid": os.getpid(), **totals}


_PROFILER: Any = None


def profile(on: bool, rows: int = 15) -> dict[str, Any] | None:
    """torch's profiler over this worker's forwards between `profile(True)` and `profile(False)` (the worker runs
    its requests and these calls on one thread); returns the op table and each op's self CPU time (us)."""
    global _PROFILER
    if on:
        _PROFILER = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        _PROFILER.start()
        return None
    prof, _PROFILER = _PROFILER, None
    if prof is None:
        return None
    prof.stop()
    events = prof.key_averages()
    return {"table": events.table(sort_by="self_cpu_time_total", row_limit=rows),
            "self_us": {e.key: float(e.self_cpu_time_total) for e in events}}


class SteeringExtension:
    """Methods vLLM adds to its worker class (`worker_extension_cls`); prefixed so none clashes with the
    worker's own attributes, which vLLM checks."""

    def creative_eval_steer(self, index: int | None, vector: Sequence[float] | None) -> dict[str, Any]:
        return install(self.get_model(), index, vector)

    def creative_eval_status(self) -> dict[str, Any]:
        return status(self.get_model())

    def creative_eval_capture(self, on: bool) -> bool:
        return capture(self.get_model(), on)

    def creative_eval_captured(self) -> list[list[float]] | None:
        return captured(self.get_model())

    def creative_eval_timing(self, on: bool) -> dict[str, Any]:
        return timing(self.get_model(), on)

    def creative_eval_profile(self, on: bool) -> dict[str, Any] | None:
        return profile(on)


def steer_from_env() -> None:
    """Steer this worker's model with the vector file `STEER_ENV` names (the steered server). vLLM constructs no
    extension and lets none of its methods override the worker's, so nothing runs between loading the model and
    serving it: a global forward pre-hook waits for the first module with decoder blocks (the model, at vLLM's
    first forward, its warm-up), installs the vector there and removes itself."""
    path = os.environ.get(STEER_ENV)
    if not path:
        return
    spec = json.loads(Path(path).read_text())

    def first(module: nn.Module, _args: Any) -> None:
        try:
            blocks(module)
        except TypeError:
            return
        handle.remove()
        install(module, spec["index"], spec["vector"])

    handle = torch.nn.modules.module.register_module_forward_pre_hook(first)


steer_from_env()  # vLLM imports this module in every worker process before it builds the worker
