"""`steered_hf`: lm-eval's HFLM with the creativity direction added at block l, in both request paths.

model_args: pretrained (default `embedded`), direction (file or `auto`), layer, alpha (lambda), norm,
positions, probe. A request whose gen_kwargs hold `steer: false` runs unsteered, so one run can produce the
baseline and the steered story; `chat: true` renders the prompt with the tokenizer's chat template (the
direction was read through it) unless `--apply_chat_template` already did.

A model_arg that cannot be used raises `ModelArgsError`, one line naming the argument and the fix; lm-eval's
command line lets it end the process, so the process then prints that line instead of a traceback through
lm-eval (`creative-eval lm-eval` prints it as its own error line, exit status 2).
"""

from __future__ import annotations

import inspect
import math
import sys
from pathlib import Path
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
EXAMPLES = {"alpha": "alpha=0.2", "layer": "layer=17"}


class ModelArgsError(ValueError):
    """A steered_hf model_arg that cannot be used: the message names it and the fix."""


class DirectionArgsError(ModelArgsError, direction_mod.DirectionMismatchError):
    """direction= names a direction made for another model."""


def _refused(e: Exception, model: str = MODEL_NAME) -> ModelArgsError:
    """The project's error about a model_arg as one line, printed alone if nothing catches it (`_one_line`)."""
    _one_line()
    kind = DirectionArgsError if isinstance(e, direction_mod.DirectionMismatchError) else ModelArgsError
    return kind(f"{model} model_args: {' '.join(str(e).split())}")


def _one_line() -> None:
    """Let an uncaught ModelArgsError end the process with its message only: the traceback runs through lm-eval's
    command line and says nothing about the argument. Other errors keep Python's report."""
    previous = sys.excepthook
    if getattr(previous, "steered_hf", False):
        return

    def hook(kind, value, tb):
        if isinstance(value, ModelArgsError):
            print(f"{Path(sys.argv[0]).name or 'python'}: error: {value}", file=sys.stderr, flush=True)
        else:
            previous(kind, value, tb)

    hook.steered_hf = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a boolean; use {name}=true or {name}=false")


def _as_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number; write e.g. {EXAMPLES.get(name, name + '=1')}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name}={value!r} must be finite; write e.g. {EXAMPLES.get(name, name + '=1')}")
    return out


def _as_layer(value: Any) -> int | None:
    """lm-eval's arg parser turns `8` into 8 and `-1` into -1.0; accept whole numbers only."""
    if value is None or str(value).lower() in ("", "none", "auto"):
        return None
    number = _as_float("layer", value)
    if number != int(number):
        raise ValueError(f"layer={value!r} is not a whole number; write e.g. layer=17")
    return int(number)


def _check_unknown(kwargs: dict[str, Any]) -> None:
    known = set(inspect.signature(HFLM.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(
            f"steered_hf: unknown model_args {unknown}; steered_hf takes {', '.join(OWN_ARGS)} "
            f"plus HFLM's {', '.join(sorted(known))}"
        )


def _direction_arg(value: Any) -> sources.Named:
    try:
        return sources.parse(str(value))
    except (ValueError, OSError) as e:
        raise ValueError(f"direction={e}; e.g. direction=auto") from None


class Live:
    """The steered lm-eval model this process made last (steered_hf or steered_vllm): the creative_probe task
    scores its stories with that model's HF weights and direction, never with a second copy or another direction."""

    last: "Live | None" = None

    def probe_inputs(self) -> tuple[Any, Any, direction_mod.Direction]:
        """(HF model, tokenizer, direction) the probe reads."""
        raise NotImplementedError


@register_model(MODEL_NAME)
class SteeredHF(HFLM, Live):
    """HFLM whose forward passes run inside `steering.steering` (generation and loglikelihood alike)."""

    live: "SteeredHF | None" = None  # the instance of this process, reused by creative_agreement

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
        try:  # every argument of ours is checked before the model loads
            _check_unknown(kwargs)
            setting = Steering(steering.DEFAULT_ALPHA if alpha is None else _as_float("alpha", alpha), str(norm),
                               str(positions))
            layer = _as_layer(layer)
            named = _direction_arg(direction)
            self.record_probe = _as_bool("probe", probe)
            self.model_id = str(pretrained)
            resolved = models.resolve(self.model_id)
        except (ValueError, OSError, models.ModelLoadError) as e:
            raise _refused(e) from None
        super().__init__(pretrained=resolved, **kwargs)
        try:  # a direction made for another model, a layer it was not extracted at
            self.direction, self.direction_file = self._direction(named, layer)
        except (ValueError, OSError) as e:
            raise _refused(e) from None
        self.steering = setting
        self.steer = steering.Steer.of(self.direction, setting)
        self.settings = settings.story_settings(self.direction, settings.STEERED, setting, model_id=self.model_id,
                                                direction_file=self.direction_file)
        self.probe_scores: list[dict[str, Any]] = []
        self._chat_applied = False
        SteeredHF.live = Live.last = self

    def probe_inputs(self) -> tuple[Any, Any, direction_mod.Direction]:
        return self.model, self.tokenizer, self.direction

    def _direction(self, source: sources.Named, layer: int | None) -> tuple[direction_mod.Direction, str]:
        parallel = self.world_size > 1 and source in sources.SOURCES  # rank 0 extracts and caches; the others read it
        if parallel and self.rank != 0:
            self.accelerator.wait_for_everyone()
        out = sources.resolve(source, self.model, self.tokenizer, self.model_id, layer)
        if parallel and self.rank == 0:
            self.accelerator.wait_for_everyone()
        return out

    def get_model_info(self) -> dict[str, Any]:
        """What lm-eval's results record of the model, plus the steering (model, direction, layer, alpha, norm,
        positions) and the device the model is really on (lm-eval's `device` is the one asked for)."""
        return {**super().get_model_info(), "steered_hf": {**self.settings, "device_used": str(self.device)}}

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
