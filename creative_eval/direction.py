"""The creativity direction: a = normalise(mean_creative LLM_l(x) - mean_negated LLM_l(x)).

Every choice that shapes it (layer, pooling, chat template, the pairs used) is stored beside the vector
in the .safetensors metadata, and loading refuses a direction made for another model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import __version__, activations, models, outputs
from creative_eval import pairs as pairs_mod
from creative_eval.records import Pair


class DirectionMismatchError(ValueError):
    """A direction file that does not belong to the model in use."""


@dataclass
class Direction:
    """A unit vector at one layer plus the metadata that says how it was made."""

    vector: torch.Tensor
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def layer(self) -> int:
        return int(self.meta["layer"])

    @property
    def raw_norm(self) -> float:
        return float(self.meta["raw_norm"])

    @property
    def resid_norm(self) -> float:
        """Mean norm of the residual stream at this layer over the pairs' content tokens."""
        return float(self.meta["resid_norm"])

    @property
    def pooling(self) -> str:
        return self.meta.get("pooling", "mean")

    @property
    def source(self) -> str:
        """What it was fitted on: `prompts` (pair prompts), `stories` (their unsteered stories) or `humans`."""
        return self.meta.get("source", "prompts")

    @property
    def trained_on(self) -> set[str]:
        """Prompt ids of the people's pairs it was fitted on (humans source): never scored with it."""
        return set(filter(None, self.meta.get("trained_on", "").split(",")))

    @property
    def template(self) -> bool:
        return self.meta.get("template", "true") == "true"

    def check(self, model: PreTrainedModel, source: str = "direction") -> None:
        """Refuse use with a model whose architecture differs from the one the direction was made on."""
        want = {"config_fingerprint": models.fingerprint(model), "hidden_size": str(model.config.hidden_size),
                "num_layers": str(models.num_layers(model))}
        bad = {k: (self.meta.get(k), v) for k, v in want.items() if self.meta.get(k) != v}
        if bad or self.vector.shape != (model.config.hidden_size,):
            detail = ", ".join(f"{k}: file {a} vs model {b}" for k, (a, b) in bad.items())
            raise DirectionMismatchError(
                f"{source} was made for model {self.meta.get('model_id')!r} and does not fit this model ({detail}); "
                "extract a new one with `creative-eval direction --model ...`"
            )


def pooled(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    layers: Sequence[int],
    *,
    pooling: str = "mean",
    template: bool = True,
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
    """Pooled prompt activations [n, hidden] per layer, plus the mean per-token residual norm per layer."""
    out = {layer: torch.empty(len(prompts), model.config.hidden_size) for layer in layers}
    norm_sum = {layer: 0.0 for layer in layers}
    n_tokens = 0
    it = activations.batches(model, tokenizer, prompts, None, layers, template=template, batch_size=batch_size)
    for idx, batch, states in tqdm(it, total=-(-len(prompts) // batch_size), disable=not progress, desc="activations"):
        mask = batch.prompt_mask
        n_tokens += int(mask.sum())
        for layer, h in states.items():
            out[layer][idx] = activations.pool(h, mask, pooling).cpu()
            norm_sum[layer] += float(h.norm(dim=-1)[mask.to(h.device)].sum())
    return out, {layer: s / max(n_tokens, 1) for layer, s in norm_sum.items()}


def from_activations(
    creative: torch.Tensor, uncreative: torch.Tensor, meta: dict[str, str]
) -> Direction:
    """Difference of means, normalised; the raw norm is kept for the `raw` steering norm mode."""
    diff = creative.mean(0) - uncreative.mean(0)
    raw = float(diff.norm())
    if raw == 0.0:
        raise ValueError("creative and negated prompts give identical mean activations; check the pairs")
    return Direction(diff / raw, {**meta, "raw_norm": f"{raw:.6g}"})


def model_meta(model: PreTrainedModel, model_id: str) -> dict[str, str]:
    """The metadata every direction carries about the model it belongs to, whatever its source."""
    return {"model_id": model_id, "config_fingerprint": models.fingerprint(model),
            "num_layers": str(models.num_layers(model)), "hidden_size": str(model.config.hidden_size),
            "version": __version__, "layer_convention": "output of decoder block l (HF hidden_states[l])"}


def extract(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    layers: int | Sequence[int],
    *,
    model_id: str,
    pairs_hash: str = "",
    pooling: str = "mean",
    template: bool = True,
    batch_size: int = 16,
    progress: bool = False,
) -> Direction | dict[int, Direction]:
    """Directions at one layer (returns a Direction) or several (one truncated pass, returns {layer: Direction})."""
    if pooling not in activations.POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of {activations.POOLINGS}")
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs to extract a direction, got {len(pairs)}")
    many = not isinstance(layers, int)
    wanted = list(layers) if many else [layers]
    prompts = [p.creative for p in pairs] + [p.uncreative for p in pairs]
    acts, norms = pooled(model, tokenizer, prompts, wanted, pooling=pooling, template=template,
                         batch_size=batch_size, progress=progress)
    base = {
        **model_meta(model, model_id), "source": "prompts", "pooling": pooling,
        "template": str(activations.uses_template(tokenizer, template)).lower(),
        "n_pairs": str(len(pairs)),
        "pairs_sha256": pairs_hash or hashlib.sha256("\n".join(prompts).encode()).hexdigest(),
    }
    n = len(pairs)
    out = {
        layer: from_activations(a[:n], a[n:], {**base, "layer": str(layer), "resid_norm": f"{norms[layer]:.6g}"})
        for layer, a in acts.items()
    }
    return out if many else out[wanted[0]]


def save(direction: Direction, path: str | Path) -> Path:
    """Write vector + metadata as safetensors (no pickle), whole or not at all (`outputs.replacing`: a full disk
    or a kill leaves no half-written file, and the error names the file and the cause)."""
    path = Path(path)
    with outputs.replacing(path) as tmp:
        save_file({"direction": direction.vector.detach().float().contiguous().cpu()}, str(tmp), metadata=direction.meta)
    return path


def load(path: str | Path, model: PreTrainedModel | None = None) -> Direction:
    """Read a direction file; with `model`, refuse it unless it was made for that architecture."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such direction file; make one with `creative-eval direction`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            names = list(f.keys())
            vector = f.get_tensor("direction") if "direction" in names else None
    except Exception:  # safetensors raises its own error types for foreign files (pickles, .pt, text)
        raise ValueError(f"{path}: not a safetensors file (creative-eval never loads pickles or .pt files); "
                         "make a direction with `creative-eval direction --out FILE.safetensors`") from None
    if vector is None:
        raise ValueError(f"{path}: a safetensors file without a 'direction' tensor (it holds {names[:5]}); "
                         "make a direction with `creative-eval direction`")
    _check_meta(path, meta, vector)
    d = Direction(vector, meta)
    if model is not None:
        d.check(model, source=str(path))
    return d


def _check_meta(path: Path, meta: dict[str, str], vector: torch.Tensor) -> None:
    """The metadata a direction needs, with readable values, and a vector of the size it states."""
    missing = [k for k in ("layer", "config_fingerprint", "raw_norm", "resid_norm") if k not in meta]
    if missing:
        raise ValueError(f"{path}: metadata lacks {missing}; re-extract it with `creative-eval direction`")
    fix = "re-extract it with `creative-eval direction`"
    for key, kind in (("layer", int), ("raw_norm", float), ("resid_norm", float), ("hidden_size", int)):
        if key in meta:
            try:
                kind(meta[key])
            except ValueError:
                raise ValueError(f"{path}: metadata {key} is {meta[key]!r}, not a number; {fix}") from None
    if vector.dim() != 1 or ("hidden_size" in meta and vector.shape[0] != int(meta["hidden_size"])):
        raise ValueError(f"{path}: the vector has shape {tuple(vector.shape)} but the metadata says hidden_size "
                         f"{meta.get('hidden_size')}; {fix}")


DEFAULT_LAYER_FRACTION = 17 / 30  # the embedded model's sweep: best held-out AUROC at layer 17 of 30


def default_layer(model: PreTrainedModel) -> int:
    """The layer used when none is given: the same depth fraction the embedded model's sweep chose."""
    return max(1, round(models.num_layers(model) * DEFAULT_LAYER_FRACTION))


def auto(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_id: str,
    layer: int | None = None,
    *,
    pooling: str = "mean",
    template: bool = True,
    progress: bool = False,
) -> tuple[Direction, Path]:
    """The direction from the shipped validation pairs, extracted once per model/layer and cached."""
    layer = models.check_layer(model, layer if layer is not None else default_layer(model))
    pairs_hash = pairs_mod.file_hash(pairs_mod.SHIPPED)
    name = f"{models.fingerprint(model)}-L{layer}-{pooling}-{'chat' if activations.uses_template(tokenizer, template) else 'raw'}-{pairs_hash[:12]}"
    path = models.cache_root() / "directions" / f"{name}.safetensors"
    return cached(path, model, lambda: extract(
        model, tokenizer, pairs_mod.load_pairs(pairs_mod.SHIPPED, "validation"), layer, model_id=model_id,
        pairs_hash=pairs_hash, pooling=pooling, template=template, progress=progress)), path


def cached(path: Path, model: PreTrainedModel, make: Callable[[], Direction]) -> Direction:
    """The direction at `path` if it is there, else `make()` written there atomically (a killed run leaves no
    half-written file behind)."""
    if path.is_file():
        return load(path, model)
    d = make()
    save(d, path)
    return d
