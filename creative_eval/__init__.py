"""creative-eval: find a creativity direction in a language model, steer with it, judge with it.

The Python API, on any causal LM transformers loads (imported on first use, so `import creative_eval` is fast):

    import creative_eval as ce
    model, tokenizer = ce.load_model("meta-llama/Meta-Llama-3-8B-Instruct", dtype="bfloat16", device_map="auto")
    d = ce.extract(model, tokenizer)                        # the shipped pairs, the default layer
    with ce.steer(model, d, alpha=0.2):                     # lambda relative to the stream's norm at the layer
        ids = model.generate(**tokenizer("Write a story", return_tensors="pt").to(model.device))
    scores = ce.score(model, tokenizer, d, ["Write a story"], ["Once upon a time..."])
    judge = ce.load_judge("self", model, tokenizer)         # or "embedded", "llama3-70b", a .yaml path
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:
    from creative_eval.direction import Direction

__version__ = "0.1.0"
__all__ = ["extract", "load_judge", "load_model", "score", "steer"]


def load_model(name: str = "embedded", dtype: str | None = None, device_map: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer): an HF id, a local folder, a .gguf file or `embedded`."""
    from creative_eval import models

    return models.load(name, dtype, device_map)


def extract(model: Any, tokenizer: Any, pairs: str | Sequence[Any] = "pairs", layer: int | None = None, *,
            split: str = "validation", model_id: str = "") -> "Direction":
    """The creativity direction at `layer` (default: the same depth fraction as the embedded model's best layer)
    from a pairs file or set name (its `split`), or from a list of `records.Pair`."""
    from creative_eval import direction, pairs as pairs_mod

    chosen = pairs_mod.load_pairs(pairs, split) if isinstance(pairs, str) else list(pairs)
    layer = layer if layer is not None else direction.default_layer(model)
    return direction.extract(model, tokenizer, chosen, layer, model_id=model_id or model.config.name_or_path)


def steer(model: Any, d: "Direction", alpha: float = 0.2, norm: str = "relative",
          positions: str = "all") -> Iterator[None]:
    """A context manager: inside it block l's output h becomes h + alpha * scale * a (`norm`: `relative` to the
    mean residual norm at the layer, `unit` = the paper's lambda, `raw`); the hook is removed on exit."""
    from creative_eval.steering import Steer, Steering, steering

    return steering(model, Steer.of(d, Steering(alpha, norm, positions)))


def score(model: Any, tokenizer: Any, d: "Direction", prompts: Sequence[str],
          texts: Sequence[str] | None = None, tokens: str = "input+response") -> list[float]:
    """The probe: mean cosine with the direction over the counted tokens of each prompt (and its text)."""
    from creative_eval.probe import Probe

    return [s.score for s in Probe(model, tokenizer, d, tokens=tokens).score(prompts, texts)]


def load_judge(preset: str = "embedded", model: Any = None, tokenizer: Any = None, direction: Any = None) -> Any:
    """A judge from a preset (`judges/preset_files/` name or a .yaml path): `.rate(stories)`, `.compare(pairs)`."""
    from creative_eval import judges

    return judges.load_judge(preset, model, tokenizer, direction)
