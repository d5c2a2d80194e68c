"""Where a direction comes from, and the one resolver that turns a name or a file into a direction.

Sources (recorded as `source` in the direction's metadata, each cached per model and layer like `auto`):
- `prompts` (also `auto`): creative minus negated validation prompts (`direction.auto`);
- `stories`: creative-prompt minus negated-prompt unsteered stories of the validation split, mean over the
  stories' response tokens, so the direction reads text rather than the instruction that asked for it;
- `humans`: people's preferred minus dispreferred texts (WQ's expert pairs), mean over response tokens. It is
  fitted on every WQ pair, so its WQ agreement is only ever reported cross-validated (`calibration`), and the
  probe judge refuses to compare a pair it was fitted on;
- `hanna`: the same fit on HANNA's human-written stories paired by crowd Surprise (the other way round: fitted
  on creativity ratings, measured on WQ).
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import activations, direction, models, pairs
from creative_eval.direction import Direction
from creative_eval.people import humans
from creative_eval.probe import textstates
from creative_eval.sources import calibration, storybank

SOURCES = ("auto", "prompts", "stories", "humans", "hanna")
HUMAN_SOURCES = ("humans", "hanna")  # fitted on people's pairwise labels: a fit (`calibration.Fitting`) applies


def _meta(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, model_id: str, layer: int, source: str,
          resid_norm: float, **extra: str) -> dict:
    return {**direction.model_meta(model, model_id), "source": source, "layer": str(layer), "pooling": "mean",
            "template": str(activations.uses_template(tokenizer, True)).lower(), "tokens": "response", "resid_norm": f"{resid_norm:.6g}", **extra}


def _resid_norm(states: textstates.States) -> float:
    """Mean residual norm per counted token, weighted by each text's token count (the `relative` steering unit)."""
    w = states.n_tokens / states.n_tokens.sum().clamp(min=1)
    return float((states.mean.norm(dim=-1) * w).sum())


def stories_direction(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, model_id: str,
                      layer: int | None = None, *, progress: bool = False) -> tuple[Direction, Path]:
    """The story-level direction at `layer` from the validation split's unsteered stories (generated once)."""
    layer = models.check_layer(model, layer if layer is not None else direction.default_layer(model))
    selected = pairs.load_pairs(pairs.SHIPPED, "validation")
    bank = storybank.cache_path(model, selected, storybank.SAMPLING, True)
    path = models.cache_root() / "directions" / f"{models.fingerprint(model)}-L{layer}-stories-{bank.stem[-16:]}.safetensors"

    def make() -> Direction:
        stories = storybank.unsteered(model, tokenizer, selected, model_id=model_id, progress=progress)
        return from_stories(model, tokenizer, stories, [layer], model_id=model_id, progress=progress)[layer]

    return direction.cached(path, model, make), path


def from_stories(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, stories: list, layers: list[int], *,
                 model_id: str, progress: bool = False) -> dict[int, Direction]:
    """Directions at `layers` from `storybank.unsteered` stories (creative-prompt half first)."""
    n = len(stories) // 2
    states = textstates.read(model, tokenizer, [s.prompt for s in stories], [s.text for s in stories], layers,
                             tokens="response", progress=progress)
    settings = ",".join(f"{k}={v}" for k, v in sorted(stories[0].settings.items()) if k != "n_tokens")
    out = {}
    for layer, st in states.items():
        meta = _meta(model, tokenizer, model_id, layer, "stories", _resid_norm(st), n_pairs=str(n), generation=settings,
                     stories_sha256=storybank.stories_hash(stories))
        out[layer] = direction.from_activations(st.mean[:n], st.mean[n:], meta)
    return out


@dataclass(frozen=True)
class LabelSet:
    """The people's pairwise labels a human-calibrated source is fitted on: where they are and what they measure."""

    source: str
    files: tuple[Path, ...]
    load: Callable[[], tuple[list, list]]
    label: str
    hint: str

    def digest(self) -> str:
        for f in self.files:
            if not f.is_file():
                raise FileNotFoundError(f"{f} not found: the {self.source!r} direction is fitted on {self.label}; "
                                        f"{self.hint}")
        return hashlib.sha256(b"".join(f.read_bytes() for f in self.files)).hexdigest()


def label_set(source: str) -> LabelSet:
    """`humans`: WQ's expert pairs (writing quality); `hanna`: HANNA's human stories paired by crowd Surprise."""
    if source == "humans":
        return LabelSet(source, (humans.WQ_DIR / humans.WQ_FILE,), lambda: humans.wq_pairs(humans.WQ_DIR),
                        f"WQ style-mimic, {humans.WQ_COMMENT}", "set $CREATIVE_EVAL_WQ to the folder holding it")
    if source == "hanna":
        return LabelSet(source, tuple(humans.HANNA_DIR / f for f in ("hanna_llm_stories.csv",
                                                                       "hanna_metric_scores_llm.csv")),
                        lambda: humans.hanna_rating_pairs(root=humans.HANNA_DIR),
                        "HANNA's human-written stories paired by crowd Surprise (mean of 3 raters; rank k vs k + n/2)",
                        "set $CREATIVE_EVAL_HANNA to the folder holding them")
    raise ValueError(f"{source!r} is not a source fitted on people's labels; use one of {', '.join(HUMAN_SOURCES)}")


_LABEL_STATES: "weakref.WeakKeyDictionary[PreTrainedModel, dict]" = weakref.WeakKeyDictionary()


def label_states(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, layer: int, source: str = "humans", *,
                 progress: bool = False) -> tuple[textstates.States, textstates.States, list, list]:
    """(preferred states, dispreferred states, preferred stories, dispreferred stories) of a human source's decided
    pairs at `layer`, response tokens (what its direction is fitted on). Read once per model, layer and label
    files in a process: fitting the direction and validating it (`direction --source humans`) share the pass."""
    labels = label_set(source)
    key = (layer, source, tuple((str(f), f.stat().st_mtime_ns) for f in labels.files))
    memo = _LABEL_STATES.setdefault(model, {})
    if key not in memo:
        good, bad, _ = calibration.preferred_sides(*labels.load())
        texts = good + bad
        st = textstates.read(model, tokenizer, [s.prompt for s in texts], [s.text for s in texts], [layer],
                             tokens="response", progress=progress)[layer]
        memo[key] = (st.take(range(len(good))), st.take(range(len(good), len(texts))), good, bad)
    return memo[key]


def training_pairs(good: list, bad: list, held_out: frozenset[str]) -> list[int]:
    """Indices of the labelled pairs a fit may use: none of the `held_out` pairs (prompt ids), nor any pair that shares
    a text with one of them, directly or through other pairs (`calibration.shared_text_groups`)."""
    if not held_out:
        return list(range(len(good)))
    unknown = sorted(held_out - {s.prompt_id for s in good})
    if unknown:
        raise ValueError(f"held-out pairs {unknown[:3]} are not among the labelled pairs; name pairs by their "
                         "prompt id, e.g. from humans.wq_sample")
    groups = calibration.shared_text_groups(good, bad)
    out = {g for g, s in zip(groups, good) if s.prompt_id in held_out}
    return [i for i, g in enumerate(groups) if g not in out]


def humans_direction(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, model_id: str,
                     layer: int | None = None, *, fitting: calibration.Fitting = calibration.Fitting(),
                     held_out: frozenset[str] = frozenset(), source: str = "humans",
                     progress: bool = False) -> tuple[Direction, Path]:
    """The human-calibrated direction at `layer` from a human source's pairs (`humans`: WQ's expert pairs,
    writing quality; `hanna`: HANNA's stories by crowd Surprise), fitted as `fitting` says (its name is in the
    cache key and the metadata, so each fit is cached apart). `held_out` names pairs (prompt ids, e.g. a judging
    sample) the fit must never see: they and every pair sharing a text with them are left out, so the probe
    judge can be measured on them."""
    layer = models.check_layer(model, layer if layer is not None else direction.default_layer(model))
    labels = label_set(source)
    digest = labels.digest()
    kept_out = hashlib.sha256(",".join(sorted(held_out)).encode()).hexdigest()[:8] if held_out else ""
    suffix = f"-out{len(held_out)}-{kept_out}" if held_out else ""
    path = (models.cache_root() / "directions"
            / f"{models.fingerprint(model)}-L{layer}-{source}-{fitting.name}-{digest[:12]}{suffix}.safetensors")

    def make() -> Direction:
        good_st, bad_st, good, bad = label_states(model, tokenizer, layer, source, progress=progress)
        train = training_pairs(good, bad, held_out)
        good_st, bad_st = good_st.take(train), bad_st.take(train)
        good, bad = [good[i] for i in train], [bad[i] for i in train]
        both = textstates.States(torch.cat([good_st.mean, bad_st.mean]), torch.cat([good_st.unit, bad_st.unit]),
                                 torch.cat([good_st.n_tokens, bad_st.n_tokens]))
        extra = {"held_out_pairs": str(len(held_out)), "held_out_sha256": kept_out} if held_out else {}
        meta = _meta(model, tokenizer, model_id, layer, source, _resid_norm(both), n_pairs=str(len(good)),
                     fit=fitting.method, length_control=fitting.length_control, labels=labels.label,
                     labels_sha256=digest, trained_on=",".join(sorted({s.prompt_id for s in good + bad})),
                     raw_norm=f"{float((good_st.mean - bad_st.mean).mean(0).norm()):.6g}", **extra)
        return Direction(fitting(good_st, bad_st), meta)

    return direction.cached(path, model, make), path


class Named(str):
    """A direction as it was named: a source, or a file whose contents were read and checked once, when the name
    was parsed (`loaded`), so a bad file fails before any model loads and is never read twice."""

    loaded: Direction | None = None


def parse(text: str | Path) -> Named:
    """A source name, or a direction file loaded here; a missing or foreign file is a ValueError."""
    named = Named(str(text))
    if named in SOURCES:
        return named
    if not Path(named).is_file():
        raise ValueError(f"{named}: no such direction file; pass a .safetensors path or one of {', '.join(SOURCES)}")
    named.loaded = direction.load(named)
    return named


def check_fitting(source: str, fitting: calibration.Fitting) -> None:
    """A fit other than the plain one applies to the sources fitted on people only (a file carries its own fit)."""
    if fitting != calibration.Fitting() and source not in HUMAN_SOURCES:
        raise ValueError(f"--length-control {fitting.length_control} applies to the humans and hanna sources only, "
                         f"not to {source!r} (a direction file carries its own fit); drop it or name one of them")


def resolve(source: str | Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, model_id: str,
            layer: int | None = None, *, fitting: calibration.Fitting = calibration.Fitting(),
            progress: bool = False) -> tuple[Direction, str]:
    """The one way a command, the lm-eval model, a task or a judge turns `source` into a direction: `auto` or
    `prompts`, `stories`, `humans` (fitted as `fitting` says; each extracted at `layer`, default
    `direction.default_layer`, and cached), or a file (read once by `parse`), checked against the model; a
    `layer` that differs from the file's is refused."""
    named = source if isinstance(source, Named) else parse(source)
    check_fitting(named, fitting)
    if named in ("auto", "prompts"):
        d, path = direction.auto(model, tokenizer, model_id, layer, progress=progress)
    elif named == "stories":
        d, path = stories_direction(model, tokenizer, model_id, layer, progress=progress)
    elif named in HUMAN_SOURCES:
        d, path = humans_direction(model, tokenizer, model_id, layer, fitting=fitting, source=named, progress=progress)
    else:
        d, path = named.loaded, Path(named)
        d.check(model, source=str(path))
        check_layer(d, layer, named)
    return d, str(path)


def check_layer(d: Direction, layer: int | None, source: str) -> None:
    """A direction file has its own layer: one asked for beside it must be that one."""
    if layer is not None and int(layer) != d.layer:
        raise ValueError(f"layer {layer} was asked for, but {source} was extracted at layer {d.layer}; drop the "
                         f"layer or use a named source ({', '.join(SOURCES)})")
