"""Judges of creativity: 0-9 ratings and pairwise preferences from local models, OpenAI-compatible
servers and the probe, every judgement persisted as it is made.

    judge = judges.load_judge("embedded")            # or "probe", "llama3-70b", a .yaml path
    ratings = judge.rate(stories)                     # list[Rating]
    prefs = judge.compare([PairItem(a, b), ...])      # list[Preference], asked in both orders
    judges.run(judge, "rating", stories, "out.jsonl") # persisted + resumable; returns the store's records

`python -m creative_eval.backends.llamacpp.server --port 8000` serves the embedded model as an OpenAI-compatible API.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from creative_eval import outputs
from creative_eval.judges import limits, presets, store
from creative_eval.judges.base import MIN_LABEL_MASS, Judge, PairItem, Templates
from creative_eval.records import Story


def load_judge(preset: str | Path | dict, model=None, tokenizer=None, direction=None):
    """A judge from a preset (a name, a path, or one `presets.load` already read); `model`/`tokenizer` (e.g. the
    generator, preset `self`) override its model, and `direction` (a Direction) the probe preset's `direction`
    field (a file, or `auto` at its `layer`)."""
    cfg = preset if isinstance(preset, dict) else presets.load(preset)
    templates = cfg["templates"]
    least = float(cfg.get("min_label_mass", MIN_LABEL_MASS))
    tie_band = float(cfg.get("tie_band", 0.0))
    # backends are imported on use: an API judge needs neither torch models nor a probe
    if cfg["backend"] == "openai":
        from creative_eval.judges.openai_backend import OpenAIJudge

        key = os.environ.get(cfg["api_key_env"]) if cfg.get("api_key_env") else None
        if cfg.get("api_key_env") and not key:
            raise presets.PresetError(f"judge preset {cfg['id']!r}: its api_key_env names ${cfg['api_key_env']}, which is "
                                      f"not set; export {cfg['api_key_env']}=KEY (for a local server, the KEY it was "
                                      "started with: --api-key KEY)")
        return OpenAIJudge(cfg["id"], cfg["model"], base_url=cfg.get("base_url"), api_key=key, templates=templates,
                           tie_band=tie_band, parse=cfg.get("parse", "logprobs"), concurrency=cfg.get("concurrency", 4),
                           timeout_s=cfg.get("timeout_s", 60.0), min_label_mass=least,
                           max_input_chars=cfg.get("max_input_chars", limits.DEFAULT_MAX_INPUT_CHARS))
    from creative_eval import models

    if model is None:
        model, tokenizer = models.load(cfg.get("model", models.EMBEDDED), cfg.get("dtype"), cfg.get("device_map"))
    if cfg["backend"] == "probe":
        from creative_eval import sources
        from creative_eval.judges.probe_judge import ProbeJudge

        from creative_eval.sources import calibration

        d = direction or sources.resolve(cfg.get("direction", "auto"), model, tokenizer,
                                         cfg.get("model", models.EMBEDDED), cfg.get("layer"),
                                         fitting=calibration.Fitting(length_control=cfg.get("length_control", "none")))[0]
        scale = tuple(cfg["scale"]) if cfg.get("scale") else None
        return ProbeJudge(cfg["id"], model, tokenizer, d, tie_band=tie_band, scale=scale,
                          tokens=cfg.get("tokens", presets.PROBE_TOKENS[0]),
                          max_input_tokens=limits.context_limit(model, cfg.get("max_input_tokens")))
    from creative_eval.judges.hf import HFJudge

    return HFJudge(cfg["id"], model, tokenizer, templates=templates, tie_band=tie_band,
                   parse=cfg.get("parse", "logprobs"), batch_size=cfg.get("batch_size", 8), min_label_mass=least,
                   max_input_tokens=limits.context_limit(model, cfg.get("max_input_tokens")))


def pairs_by_condition(stories: Sequence[Story], a: str = "induced", b: str = "baseline") -> list[PairItem]:
    """Pair the stories of each prompt id: condition `a` vs condition `b`."""
    by = {(s.prompt_id, s.condition): s for s in stories}
    return [PairItem(s, by[(s.prompt_id, b)]) for s in stories if s.condition == a and (s.prompt_id, b) in by]


def run(judge, mode: str, items: Sequence, store_path: str | Path, chunk: int = 8, progress: bool = False) -> list[dict]:
    """Judge `items` (stories for "rating", PairItems for "pairwise") chunk by chunk, appending each
    judgement to `store_path` as it is made and skipping keys already there; returns all stored records.
    The store's lock is held throughout, so a second run on the same file waits and then skips what this one did;
    stories longer than the judge's input limit are cut to fit, the cut recorded on the record."""
    keyed = _keyed(judge, mode, items)
    with outputs.writing(store_path):
        done = store.done_keys(store_path)
        todo = [(k, *limits.fit(judge, it)) for k, it in keyed if k not in done]  # a refusal comes before any work
        ask = judge.rate if mode == "rating" else judge.compare
        with tqdm(total=len(items), initial=len(items) - len(todo), disable=not progress, desc=f"{judge.id} {mode}",
                  unit="judgement") as bar:
            for i in range(0, len(todo), chunk):
                part = todo[i : i + chunk]
                for (k, _, cut), rec in zip(part, ask([it for _, it, _ in part])):
                    rec.truncated_tokens = max(rec.truncated_tokens, cut)
                    store.append(store_path, k, rec)
                bar.update(len(part))
    return list(store.records(store_path)) if Path(store_path).is_file() else []


def kept(judge, mode: str, items: Sequence, store_path: str | Path) -> int:
    """How many of `items` already have this judge's judgement in `store_path` (`run` keeps them, makes the rest)."""
    done = store.done_keys(store_path)
    return sum(k in done for k, _ in _keyed(judge, mode, items))


def _keyed(judge, mode: str, items: Sequence) -> list[tuple[str, object]]:
    if mode not in ("rating", "pairwise"):
        raise ValueError(f"mode={mode!r} is not 'rating' or 'pairwise'")
    key = store.rating_key if mode == "rating" else store.pair_key
    return [(key(judge.id, judge.hash_for(mode), it), it) for it in items]


__all__ = ["Judge", "PairItem", "Templates", "kept", "load_judge", "pairs_by_condition", "run"]
