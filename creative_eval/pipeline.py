"""The main job, end to end: the data path in one readable place.

pairs -> direction -> {steered stories, probe scores} -> judgements (self-judge, probe) -> stats -> report.
Every stage writes its records as it goes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from . import direction as direction_mod
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import controls, frontier, generate, humans, judges, models, pairs, report, steering, textstates
from .direction import Direction
from .records import Preference, Rating, Story, from_dict

COMPARISONS = (("induced", "baseline"), ("creative", "baseline"))


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
    """One judge's ratings of every story and preferences on every pair, persisted and resumed by key (records
    of other templates in the same files are left out)."""
    rated = judges.run(judge, "rating", stories, out / f"ratings-{judge.id}.jsonl", progress=True)
    compared = judges.run(judge, "pairwise", pair_items, out / f"preferences-{judge.id}.jsonl", progress=True)
    return ([from_dict(Rating, r) for r in rated if r["template_hash"] == judge.hash_for("rating")],
            [from_dict(Preference, r) for r in compared if r["template_hash"] == judge.hash_for("pairwise")])


def demo(out: str | Path = "reports/demo", n: int = 30, max_new_tokens: int = 128, alpha: float = steering.DEFAULT_ALPHA,
         wq_pairs: int = 40, seed: int = 0) -> Path:
    """The main job on the embedded model; returns the report's path.

    Stories for `n` test prompts in three conditions, judged by the model itself (0-9 rating, pairwise in both
    orders, position-debiased) and by the probe; with WQ present, both judges also compare `wq_pairs` expert-
    labelled paragraph pairs (a fixed sample), so the report shows agreement with people (writing quality)
    beside the length and random baselines."""
    out = Path(out)
    model, tokenizer = models.load(models.EMBEDDED)
    d, d_path = direction_mod.auto(model, tokenizer, models.EMBEDDED, progress=True)
    selected = pairs.load_pairs(pairs.SHIPPED, "test")[:n]
    sampling = generate.Sampling(max_new_tokens, seed=seed)
    stories = generate.resume(out / "stories.jsonl", model, tokenizer, selected, d, alpha=alpha, sampling=sampling,
                              model_id=models.EMBEDDED, direction_file=str(d_path), progress=True)
    items = [item for a, b in COMPARISONS for item in judges.pairs_by_condition(stories, a, b)]
    have_wq = wq_pairs and (humans.WQ_DIR / humans.WQ_FILE).is_file()
    wq_stories, labels = humans.wq_sample(wq_pairs, seed) if have_wq else ([], [])
    by_id = {s.id: s for s in wq_stories}
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
        meta["human_label"] = f"WQ experts' writing-quality preference, {len(labels)} pairs (seed {seed})"
    steering_frontier = frontier.demo(model, tokenizer, d, selected, out / "frontier", model_id=models.EMBEDDED)
    return report.build(out.name, stories, ratings, preferences + probe_preferences, probe_scores, labels,
                        meta, out_root=out.parent, human_stories=wq_stories, frontier=steering_frontier)
