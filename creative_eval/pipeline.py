"""The main job, end to end, and the steering calibration: the data path in one readable place.

pairs -> direction -> {steered stories, probe scores} -> judgements (self-judge, probe) -> stats -> report.
Every stage writes its records as it goes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import direction as direction_mod
from . import controls, generate, humans, judges, models, pairs, report, stats, steering, textstates
from .direction import Direction
from .probe import Probe
from .records import CONDITIONS, Pair, Preference, Rating, Story, append_jsonl, from_dict, read_records

COMPARISONS = (("induced", "baseline"), ("creative", "baseline"))


def resumable_stories(path: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, selected: Sequence[Pair],
                      direction: Direction, *, alpha: float, sampling: generate.Sampling, model_id: str,
                      direction_file: str) -> list[Story]:
    """Stories per condition, appended to `path` as each condition finishes; a condition already complete there
    with the same settings is read back, not regenerated."""
    done = read_records(path, Story) if path.is_file() else []
    out: list[Story] = []
    for condition in CONDITIONS:
        kept = _matching(done, selected, condition, alpha, sampling)
        if kept is None:
            kept = generate.stories(model, tokenizer, selected, direction, alpha=alpha, conditions=[condition],
                                    sampling=sampling, model_id=model_id, direction_file=direction_file,
                                    progress=True)
            for story in kept:
                append_jsonl(path, story)
        out += kept
    return out


def _matching(done: list[Story], selected: Sequence[Pair], condition: str, alpha: float,
              sampling: generate.Sampling) -> list[Story] | None:
    """The stored stories of `condition` made with these settings, in `selected` order; None if any is missing."""
    want = {"max_new_tokens": sampling.max_new_tokens, "seed": sampling.seed, "temperature": sampling.temperature,
            "top_p": sampling.top_p, "alpha": alpha if condition == "induced" else 0.0}
    by_id = {s.prompt_id: s for s in done
             if s.condition == condition and all(s.settings.get(k) == v for k, v in want.items())}
    if not {p.id for p in selected} <= set(by_id):
        return None
    return [by_id[p.id] for p in selected]


def probe_states(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, stories: Sequence[Story],
                 d: Direction, tokens: str = "input+response") -> tuple[textstates.States, textstates.States]:
    """Per-story states at the direction's layer under `tokens`, and under response tokens (for comparing
    stories of different prompts); their product with the direction is the probe score."""
    def read(rule: str) -> textstates.States:
        return textstates.read(model, tokenizer, [s.prompt for s in stories], [s.text for s in stories], [d.layer],
                               tokens=rule, template=d.template, progress=True)[d.layer]

    same = read(tokens)
    return same, same if tokens == "response" else read("response")


def judge_all(judge, stories: Sequence[Story], pair_items: Sequence[judges.PairItem],
              out: Path) -> tuple[list[Rating], list[Preference]]:
    """One judge's ratings of every story and preferences on every pair, persisted and resumed by key."""
    rated = judges.run(judge, "rating", stories, out / f"ratings-{judge.id}.jsonl", progress=True)
    compared = judges.run(judge, "pairwise", pair_items, out / f"preferences-{judge.id}.jsonl", progress=True)
    return [from_dict(Rating, r) for r in rated], [from_dict(Preference, r) for r in compared]


def demo(out: str | Path = "reports/demo", n: int = 30, max_new_tokens: int = 128, alpha: float = steering.DEFAULT_ALPHA,
         hanna_prompts: int = 24, seed: int = 0) -> Path:
    """The main job on the embedded model; returns the report's path.

    Stories for `n` test prompts in three conditions, judged by the model itself (0-9 rating, pairwise in both
    orders) and by the probe; with HANNA present, both judges also compare human- and model-written stories
    (first `hanna_prompts` prompts, first 120 words each) so the report shows agreement with a human label."""
    out = Path(out)
    model, tokenizer = models.load(models.EMBEDDED)
    d, d_path = direction_mod.auto(model, tokenizer, models.EMBEDDED, progress=True)
    selected = pairs.load_pairs(pairs.SHIPPED, "test")[:n]
    sampling = generate.Sampling(max_new_tokens, seed=seed)
    stories = resumable_stories(out / "stories.jsonl", model, tokenizer, selected, d, alpha=alpha,
                                sampling=sampling, model_id=models.EMBEDDED, direction_file=str(d_path))
    items = [item for a, b in COMPARISONS for item in judges.pairs_by_condition(stories, a, b)]
    hanna_stories, labels = humans.hanna_sample(hanna_prompts) if humans.HANNA_DIR.is_dir() else ([], [])
    by_id = {s.id: s for s in hanna_stories}
    items += [judges.PairItem(by_id[h.story_a], by_id[h.story_b]) for h in labels]
    ratings, preferences = judge_all(judges.load_judge("self", model, tokenizer), stories, items, out)
    probe_judge = judges.load_judge("probe", model, tokenizer)
    probe_ratings, probe_preferences = judge_all(probe_judge, stories, items, out)
    probe_scores = {r.story_id: r.score for r in probe_ratings if r.score is not None}
    meta = {"direction_file": str(d_path), **{f"direction_{k}": v for k, v in d.meta.items()},
            "probe_tokens": "input+response for stories of one prompt; response only for stories of different prompts",
            **controls.describe(controls.condition_comparisons(stories, *probe_states(model, tokenizer, stories, d),
                                                               d.vector, "input+response"))}
    if labels:
        meta["human_label"] = f"HANNA source: human-written vs {split_story_id(labels[0].story_b)[1]} story"
    return report.build(out.name, stories, ratings, preferences + probe_preferences, probe_scores, labels,
                        meta, out_root=out.parent)
