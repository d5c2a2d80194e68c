"""`steered_hf`: lm-eval's HFLM with the creativity direction added at block l, in both request paths.

model_args: pretrained (default `embedded`), direction (file or `auto`), layer, alpha (lambda), norm,
positions, probe. A request whose gen_kwargs hold `steer: false` runs unsteered, so one run can produce the
baseline and the steered story; `chat: true` renders the prompt with the tokenizer's chat template (the
direction was read through it) unless `--apply_chat_template` already did.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from creative_eval import activations
from creative_eval import direction as direction_mod
from creative_eval import models, probe, sources, steering
from creative_eval.harness.autoload import MODEL_NAME
from creative_eval.steering import settings
from creative_eval.steering.settings import Steering

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
        setting = Steering(steering.DEFAULT_ALPHA if alpha is None else _as_float("alpha", alpha), str(norm),
                           str(positions))
        layer = _as_layer(layer)
        named = sources.parse(str(direction))  # a bad file fails before the model loads
        self.record_probe = _as_bool("probe", probe)
        self.model_id = str(pretrained)
        super().__init__(pretrained=models.resolve(self.model_id), **kwargs)
        self.direction, self.direction_file = self._direction(named, layer)
        self.steering = setting
        self.steer = steering.Steer.of(self.direction, setting)
        self.settings = settings.story_settings(self.direction, settings.STEERED, setting, model_id=self.model_id,
                                                direction_file=self.direction_file)
        self.probe_scores: list[dict[str, Any]] = []
        self._chat_applied = False
        SteeredHF.live = self

    def _direction(self, source: sources.Named, layer: int | None) -> tuple[direction_mod.Direction, str]:
        parallel = self.world_size > 1 and source in sources.SOURCES  # rank 0 extracts and caches; the others read it
        if parallel and self.rank != 0:
            self.accelerator.wait_for_everyone()
        out = sources.resolve(source, self.model, self.tokenizer, self.model_id, layer)
        if parallel and self.rank == 0:
            self.accelerator.wait_for_everyone()
        return out

    def _steering(self, on: bool = True):
        return steering.steering(self.model, [self.steer] if on else [])

    def apply_chat_template(self, *args, **kwargs) -> str:
        self._chat_applied = True
        return super().apply_chat_template(*args, **kwargs)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        prompts, steered = [], []
        for req in requests:
            context, gen_kwargs = req.args[0], dict(req.args[1])
            chat = _as_bool("chat", gen_kwargs.pop("chat", False)) and not self._chat_applied
            prompts.append(context)
            steered.append(_as_bool("steer", gen_kwargs.get("steer", True)))
            if chat:
                context = activations.render(self.tokenizer, context, None, template=True)
            req.arguments = (context, gen_kwargs, *req.args[2:])
        texts = super().generate_until(requests, disable_tqdm=disable_tqdm)
        if self.record_probe:
            self._record(prompts, texts, steered)
        return texts

    def _record(self, prompts: list[str], texts: list[str], steered: list[bool]) -> None:
        """Probe score of every generated row on the unsteered model, by the probe's own rule (so it equals
        `creative-eval score` on the same text); steering at block l leaves layer l itself unchanged, so this is
        also what the model read at layer l while it generated."""
        scores = probe.Probe(self.model, self.tokenizer, self.direction).score(prompts, texts)
        self.probe_scores += [{"steered": on, "probe": s.score, "n_tokens": s.n_tokens} for on, s in zip(steered, scores)]

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        on = _as_bool("steer", generation_kwargs.pop("steer", True))
        with self._steering(on):
            return super()._model_generate(context, max_length, stop, **generation_kwargs)

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        if self.steer.positions != "all":
            raise ValueError(
                f"positions={self.steer.positions!r} has no meaning for loglikelihood requests (no generated "
                "tokens); use positions=all for loglikelihood tasks"
            )
        with self._steering():
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
