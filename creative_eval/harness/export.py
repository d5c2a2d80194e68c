"""The direction in other tools' formats, with the lambda scale applied, refusing a model it was not made for."""

from __future__ import annotations

from pathlib import Path

import torch

from creative_eval import models, outputs
from creative_eval.direction import Direction
from creative_eval.steering import Steering


def hookpoint(model: torch.nn.Module, layer: int) -> str:
    """Name of block `layer` inside `model.base_model`, as lm-eval's `steered` model addresses it."""
    target = models.block(model, layer)
    for name, module in model.base_model.named_modules():
        if module is target:
            return name
    raise TypeError(f"block {layer} is not inside {type(model).__name__}.base_model")


def lm_eval_steered(direction: Direction, model: torch.nn.Module, setting: Steering, path: str | Path) -> Path:
    """Write the direction as lm-eval's built-in `steered` model reads it (a torch .pt dict; that format is
    a pickle, which the built-in model loads with weights_only=False)."""
    direction.check(model)
    path = Path(path)
    if path.suffix not in (".pt", ".pth"):
        raise ValueError(f"{path}: lm-eval's steered model reads .pt or .pth files; change the extension")
    config = {hookpoint(model, direction.layer): {
        "steering_vector": direction.vector.detach().float().cpu(),
        "steering_coefficient": setting.scale(direction),
        "action": "add", "bias": None, "head_index": None,
    }}
    with outputs.replacing(path) as tmp, tmp.open("wb") as f:  # whole or not at all; a file object: errors are OSErrors
        torch.save(config, f)
    return path
