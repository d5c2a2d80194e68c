"""`steered_hf`: lm-eval's HFLM with the creativity direction added at block l, in both request paths.

model_args: pretrained (default `embedded`), direction (file or `auto`), layer, alpha (lambda), norm,
positions, probe. A request whose gen_kwargs hold `steer: false` runs unsteered, so one run can produce the
baseline and the steered story; `chat: true` renders the prompt with the tokenizer's chat template (the
direction was read through it) unless `--apply_chat_template` already did.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from . import activations, models, steering
from . import direction as direction_mod
from .lm_eval_hook import MODEL_NAME

OWN_ARGS = ("pretrained", "direction", "layer", "alpha", "norm", "positions", "probe")
REQUEST_FLAGS = ("steer", "chat")


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a boolean; use true or false")


def _as_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(out):
        raise ValueError(f"{name}={value!r} must be finite")
    return out


def _as_layer(value: Any) -> int | None:
    """lm-eval's arg parser turns `8` into 8 and `-1` into -1.0; accept whole numbers only."""
    if value is None or str(value).lower() in ("", "none", "auto"):
        return None
    number = _as_float("layer", value)
    if number != int(number):
        raise ValueError(f"layer={value!r} is not a whole number")
    return int(number)


def _check_unknown(kwargs: dict[str, Any]) -> None:
    known = set(inspect.signature(HFLM.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(
            f"steered_hf: unknown model_args {unknown}; steered_hf takes {', '.join(OWN_ARGS)} "
            f"plus HFLM's {', '.join(sorted(known))}"
        )


@register_model(MODEL_NAME)
class SteeredHF(HFLM):
    """HFLM whose forward passes run inside `steering.steering` (generation and loglikelihood alike)."""

    live: "SteeredHF | None" = None  # the instance of this process, reused by the creative_probe task

    def __init__(
        self,
        pretrained: str = models.EMBEDDED,
        direction: str = "auto",
        layer: Any = None,
        alpha: Any = None,
        norm: str = "relative",
        positions: str = "all",
        probe: Any = False,
        **kwargs: Any,
    ):
        _check_unknown(kwargs)
        alpha = steering.DEFAULT_ALPHA if alpha is None else _as_float("alpha", alpha)
        layer, norm, positions = _as_layer(layer), str(norm), str(positions)
        steering.check(alpha, norm, positions)
        self.record_probe = _as_bool("probe", probe)
        self.model_id = str(pretrained)
        super().__init__(pretrained=models.resolve(self.model_id), **kwargs)
        self.direction, self.direction_file = self._direction(str(direction), layer)
        self.steer = steering.Steer.from_direction(self.direction, alpha, norm, positions)
        self.settings = {"model": self.model_id, "direction": self.direction_file, "layer": self.direction.layer,
                         "alpha": alpha, "norm": norm, "positions": positions}
        self.probe_scores: list[dict[str, Any]] = []
        self._chat_applied = False
        SteeredHF.live = self

    def _direction(self, source: str, layer: int | None) -> tuple[direction_mod.Direction, str]:
        if source != "auto":
            d = direction_mod.load(source, self.model)
            if layer is not None and layer != d.layer:
                raise ValueError(f"layer={layer} but {source} was extracted at layer {d.layer}; drop `layer` "
                                 "or use direction=auto")
            return d, source
        if self.world_size > 1 and self.rank != 0:  # rank 0 extracts and caches; the others read the cache
            self.accelerator.wait_for_everyone()
        d, path = direction_mod.auto(self.model, self.tokenizer, self.model_id, layer)
        if self.world_size > 1 and self.rank == 0:
            self.accelerator.wait_for_everyone()
        return d, str(path)

    def _steering(self, on: bool = True, trace: steering.ProbeTrace | None = None):
        return steering.steering(self.model, [self.steer] if on else [], trace=trace)

    def apply_chat_template(self, *args, **kwargs) -> str:
        self._chat_applied = True
        return super().apply_chat_template(*args, **kwargs)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        for req in requests:
            context, gen_kwargs = req.args[0], dict(req.args[1])
            if _as_bool("chat", gen_kwargs.pop("chat", False)) and not self._chat_applied:
                context = activations.render(self.tokenizer, context, None, template=True)
            req.arguments = (context, gen_kwargs, *req.args[2:])
        return super().generate_until(requests, disable_tqdm=disable_tqdm)

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        on = _as_bool("steer", generation_kwargs.pop("steer", True))
        trace = steering.ProbeTrace(self.direction.layer, self.direction.vector) if self.record_probe else None
        with self._steering(on, trace):
            out = super()._model_generate(context, max_length, stop, **generation_kwargs)
        if trace is not None:
            self._record(context, out, trace, on)
        return out

    def _record(self, context: torch.Tensor, out: torch.Tensor, trace: steering.ProbeTrace, steered: bool) -> None:
        """Pre-injection probe score per row: mean cosine over the real prompt tokens and the generated ones."""
        cos = trace.cosines()
        pad = self.tokenizer.pad_token_id
        real = torch.cat([context.cpu() != pad, out[:, context.shape[1]:].cpu() != pad], dim=1)[:, : cos.shape[1]]
        real[:, 0] = False  # the attention sink
        for row in range(cos.shape[0]):
            self.probe_scores.append({"steered": steered, "probe": float(cos[row][real[row]].mean()),
                                      "n_tokens": int(real[row].sum())})

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        if self.steer.positions != "all":
            raise ValueError(
                f"positions={self.steer.positions!r} has no meaning for loglikelihood requests (no generated "
                "tokens); use positions=all for loglikelihood tasks"
            )
        with self._steering():
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)


def hookpoint(model: torch.nn.Module, layer: int) -> str:
    """Name of block `layer` inside `model.base_model`, as lm-eval's `steered` model addresses it."""
    target = models.block(model, layer)
    for name, module in model.base_model.named_modules():
        if module is target:
            return name
    raise TypeError(f"block {layer} is not inside {type(model).__name__}.base_model")


def export_steered(
    direction: direction_mod.Direction, model: torch.nn.Module, alpha: float, norm: str, path: str | Path
) -> Path:
    """Write the direction as lm-eval's built-in `steered` model reads it (a torch .pt dict; that format is
    a pickle, which the built-in model loads with weights_only=False)."""
    steering.check(alpha, norm)
    direction.check(model)
    config = {hookpoint(model, direction.layer): {
        "steering_vector": direction.vector.detach().float().cpu(), "steering_coefficient": alpha * steering.scale(direction, norm),
        "action": "add", "bias": None, "head_index": None,
    }}
    path = Path(path)
    if path.suffix not in (".pt", ".pth"):
        raise ValueError(f"{path}: lm-eval's steered model reads .pt or .pth files; change the extension")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(config, path)
    return path
