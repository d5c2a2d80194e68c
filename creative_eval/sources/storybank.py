"""Unsteered stories from a pair set's creative and negated prompts, generated once per model and settings.

Story-level directions are fitted on these stories (validation split) and the probe is measured on them
(test split), so they are cached under the cache root as JSONL keyed by everything that shapes them: a
rerun costs nothing and a killed run resumes block by block with the same seeds it would have used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Sequence

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import activations, models
from creative_eval.records import Pair, Story, append_jsonl, read_records, story_id
from creative_eval.steering import generate

CREATIVE, NEGATED = "creative", "baseline"  # story conditions: creative prompt / negated prompt, both unsteered
SAMPLING = generate.Sampling(max_new_tokens=96, batch_size=32)  # modest length; batch 32 for CPU throughput


def cache_path(model: PreTrainedModel, pairs: Sequence[Pair], sampling: generate.Sampling, template: bool) -> Path:
    """One file per model, pair texts and generation settings."""
    key = json.dumps({"pairs": [[p.id, p.creative, p.uncreative] for p in pairs], "template": template,
                      **dataclasses.asdict(sampling)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return models.cache_root() / "stories" / f"{models.fingerprint(model)}-{digest}.jsonl"


def stories_hash(stories: Sequence[Story]) -> str:
    """SHA-256 over the stories' ids and texts, recorded in every direction fitted on them."""
    return hashlib.sha256("\n".join(f"{s.id}\t{s.text}" for s in stories).encode()).hexdigest()


def unsteered(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    *,
    model_id: str,
    sampling: generate.Sampling = SAMPLING,
    template: bool = True,
    progress: bool = False,
) -> list[Story]:
    """A creative-prompt and a negated-prompt story per pair (creative ones first, in pair order), read from
    the cache; missing blocks of `sampling.batch_size` pairs are generated and appended as they finish."""
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs to generate stories from, got {len(pairs)}")
    path = cache_path(model, pairs, sampling, template)
    done = {s.id: s for s in read_records(path, Story)} if path.is_file() else {}
    settings = {"model": model_id, "alpha": 0.0, "template": activations.uses_template(tokenizer, template), **dataclasses.asdict(sampling)}
    size = sampling.batch_size
    for condition in (CREATIVE, NEGATED):
        for block, start in enumerate(range(0, len(pairs), size)):
            part = pairs[start : start + size]
            if all(story_id(p.id, condition) in done for p in part):
                continue
            prompts = [p.creative if condition == CREATIVE else p.uncreative for p in part]
            block_sampling = dataclasses.replace(sampling, seed=sampling.seed + block)  # as one call would seed it
            gens = generate.generate(model, tokenizer, prompts, sampling=block_sampling, template=template,
                                     progress=progress)
            for p, prompt, g in zip(part, prompts, gens):
                story = Story(prompt_id=p.id, condition=condition, prompt=prompt, text=g.text,
                              settings={**settings, "n_tokens": g.n_tokens})
                append_jsonl(path, story)
                done[story.id] = story
    return [done[story_id(p.id, c)] for c in (CREATIVE, NEGATED) for p in pairs]
