"""The agreement suite: judges against a human set, every judgement persisted and resumed, one table of rows.

Human sets: `wq` (150 expert writing-quality pairs, or a fixed nested sample of them), `hanna-ratings` (crowd
Surprise/Complexity ratings of HANNA's 96 human-written stories), or a label file with its stories. Each judge
gives direct pairwise verdicts (position-debiased) and, where it rates, pairwise verdicts from its ratings
(one forward per story instead of two per pair); the trivial judges stand beside them in every table.
HANNA's human-vs-model pairs are a source label, not a judgement, and are not a human set here.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.stats import rankdata

from creative_eval import judges
from creative_eval.judges import PairItem, store, templates
from creative_eval.people import agreement, humans
from creative_eval.people.agreement import Verdicts
from creative_eval.probe import controls, textstates
from creative_eval.records import HumanLabel, Preference, Rating, Story, from_dict, read_records

HUMAN_SETS = ("wq", "hanna-ratings")
MODES = ("pairwise", "rating")


@dataclass(frozen=True)
class HumanSet:
    """Stories and people's labels on them; `label` says what the labels measure."""

    name: str
    stories: list[Story]
    labels: list[HumanLabel]
    label: str

    @property
    def pairwise(self) -> bool:
        return any(h.choice is not None for h in self.labels)

    def pair_items(self) -> list[PairItem]:
        by = {s.id: s for s in self.stories}
        return [PairItem(by[h.story_a], by[h.story_b]) for h in self.labels if h.choice is not None]

    def rated_stories(self) -> list[Story]:
        """Pairwise sets: every story of a labelled pair; rating sets: the rated stories."""
        ids = {i for h in self.labels for i in (h.story_a, h.story_b) if i}
        return [s for s in self.stories if s.id in ids]


def human_set(spec: str, limit: int | None = None, seed: int = 0, stories_file: str | None = None) -> HumanSet:
    """`wq` (first `limit` pairs of the nested sample), `hanna-ratings` (first `limit` stories), or a label
    file (CSV/JSONL) whose story ids name stories in `stories_file`. Fails before any model loads."""
    if spec == "wq":
        stories, labels = humans.wq_sample(limit, seed) if limit else humans.wq_pairs(seed=seed)
        return HumanSet("wq", stories, labels, agreement.LABEL_WQ)
    if spec == "hanna-ratings":
        labels = humans.hanna_ratings()
        keep = sorted({h.story_a for h in labels})[:limit]
        stories = [s for s in humans.hanna_stories() if s.id in keep]
        return HumanSet(spec, stories, [h for h in labels if h.story_a in keep], agreement.LABEL_RATINGS)
    if stories_file is None:
        raise ValueError(f"--humans {spec}: a label file needs --stories STORIES.jsonl with the texts of the stories "
                         f"it names (or use one of {HUMAN_SETS})")
    labels = humans.load_labels(spec)
    if any(h.rater == humans.SOURCE_RATER for h in labels):
        raise ValueError(f"{spec}: holds HANNA source labels (which story a human wrote); they are not people's "
                         "judgements and do not count as agreement with people")
    stories = read_records(stories_file, Story)
    known = {s.id for s in stories}
    missing = sorted({i for h in labels for i in (h.story_a, h.story_b) if i and i not in known})
    if missing:
        raise ValueError(f"{spec}: labels name stories not in {stories_file}, e.g. {missing[:3]}")
    if limit:
        keep = {h.item_id for h in labels[:limit]}
        labels = [h for h in labels if h.item_id in keep]
    return HumanSet(Path(spec).stem, stories, labels, agreement.label_kind(labels))


def with_templates(judge, rate: str | None = None, compare: str | None = None):
    """A copy of an LLM judge using other templates (names or `ensemble`); the model is shared."""
    out = copy.copy(judge)
    out.templates = judges.Templates.named(rate, compare)
    return out


def collect(judge, hs: HumanSet, out: str | Path, modes: Sequence[str] = MODES,
            progress: bool = False) -> tuple[list[Preference], list[Rating]]:
    """The judge's preferences on the set's pairs and ratings of its stories, persisted in `out` and resumed.

    Records are found by their resume key (judge, template, texts), not by story id: a text that appears in
    two pairs (WQ reuses some paragraphs) is judged once and its record serves both, under each one's ids."""
    out = Path(out)
    prefs: list[Preference] = []
    ratings: list[Rating] = []
    if "pairwise" in modes and hs.pairwise:
        items = hs.pair_items()
        recs = judges.run(judge, "pairwise", items, out / f"preferences-{judge.id}.jsonl", progress=progress)
        by_key = {r["key"]: r for r in recs}
        th = judge.hash_for("pairwise")
        prefs = [dataclasses.replace(from_dict(Preference, by_key[store.pair_key(judge.id, th, it)]), pair_id=it.id,
                                     story_a=it.a.id, story_b=it.b.id) for it in items]
    if "rating" in modes:
        stories = hs.rated_stories()
        recs = judges.run(judge, "rating", stories, out / f"ratings-{judge.id}.jsonl", progress=progress)
        by_key = {r["key"]: r for r in recs}
        th = judge.hash_for("rating")
        ratings = [dataclasses.replace(from_dict(Rating, by_key[store.rating_key(judge.id, th, s)]), story_id=s.id)
                   for s in stories]
    return prefs, ratings


def rating_values(ratings: Sequence[Rating]) -> dict[str, float | None]:
    """story id -> the 0-9 expectation (LLM judges) or the probe score (probe judge without a 0-9 scale)."""
    return {r.story_id: (r.expected if r.expected is not None else r.score) if r.status == "ok" else None
            for r in ratings}


def verdicts(name: str, prefs: Sequence[Preference], ratings: Sequence[Rating], hs: HumanSet,
             from_ratings: bool = True) -> list[Verdicts]:
    """A judge's direct pairwise verdicts (named `name`) and, with `from_ratings`, its verdicts from ratings
    (`name (ratings)`). The probe's pairwise verdict already is a comparison of its two scores, so it has none."""
    out = [dataclasses.replace(v, judge=name) for v in agreement.verdicts_from_preferences(prefs)]
    if from_ratings and ratings and hs.pairwise:
        keys = [(h.story_a, h.story_b) for h in hs.labels if h.choice is not None]
        out.append(agreement.pairwise_from_ratings(rating_values(ratings), keys, judge=f"{name} (ratings)"))
    return out


def table(hs: HumanSet, judged: Sequence[Verdicts], rated: dict[str, list[Rating]], n_boot: int = 2000,
          seed: int = 0) -> dict[str, Any]:
    """Pairwise rows (the judges, then longer-wins, shorter-wins, random) and rating rows (Spearman per aspect,
    the judges, then the story's length in words as the trivial rater)."""
    rows = (agreement.pairwise_agreement_table(judged, hs.labels, hs.stories, label=hs.label, seed=seed,
                                               n_boot=n_boot) if hs.pairwise else [])
    rating_rows = []
    if any(h.rating is not None for h in hs.labels):
        raters = {name: rating_values(rs) for name, rs in rated.items() if rs}
        if raters:
            raters[agreement.LENGTH_RATER] = {s.id: float(agreement.words(s.text)) for s in hs.stories}
        texts = {s.id: s.text for s in hs.stories}
        rating_rows = [row for name, values in raters.items()
                       for row in agreement.rating_agreement(name, values, hs.labels, n_boot=n_boot, seed=seed,
                                                             texts=None if name == agreement.LENGTH_RATER else texts)]
    return {"set": hs.name, "label": hs.label, "n_labels": len(hs.labels), "pairwise": rows, "ratings": rating_rows}


def random_nulls(judge, hs: HumanSet, n: int = controls.N_RANDOM, seed: int = 0) -> tuple[np.ndarray | None, dict]:
    """What a probe judge's numbers would be with n random unit directions at its layer in place of its own, read
    on the tokens its verdicts read (same-prompt pairs and ratings on its `tokens`, other pairs on response
    tokens): the agreement over the decided pairwise labels [n] (None for a rating set) and, per rated aspect,
    the Spearman with the people's mean rating [n]."""
    stories = hs.rated_stories()
    same, cross = textstates.story_states(judge.probe.model, judge.probe.tokenizer, stories, judge.direction,
                                          judge.probe.tokens)
    rand = controls.random_directions(judge.direction.vector.shape[0], n, seed)
    same_scores, cross_scores = same.scores(rand).numpy(), cross.scores(rand).numpy()
    at = {s.id: i for i, s in enumerate(stories)}
    decided = [h for h in hs.labels if h.choice in ("A", "B") and h.story_b]
    pair_null = None
    if decided:
        def margin(h: HumanLabel) -> np.ndarray:
            a, b = at[h.story_a], at[h.story_b]
            scores = cross_scores if stories[a].prompt != stories[b].prompt else same_scores
            return scores[a] - scores[b]

        chose_a = np.array([[h.choice == "A"] for h in decided])
        pair_null = ((np.stack([margin(h) for h in decided]) > 0) == chose_a).mean(0)
    rating_null = {}
    for aspect, by_story in agreement.human_mean_ratings(hs.labels).items():
        ids = [sid for sid in by_story if sid in at]
        ranks = rankdata(same_scores[[at[i] for i in ids]], axis=0)
        people = rankdata([by_story[i][0] for i in ids])
        rating_null[aspect] = np.array([np.corrcoef(ranks[:, k], people)[0, 1] for k in range(n)])
    return pair_null, rating_null


def beside_random_directions(judge, hs: HumanSet, result: dict[str, Any], n: int = controls.N_RANDOM,
                             seed: int = 0) -> None:
    """Each row of a probe judge in `table`'s result gains `random`: its value's percentile among the same number
    from n random directions (`random_nulls`), the control every probe number stands beside. Rows of other
    judges are left as they are."""
    pair_null, rating_null = random_nulls(judge, hs, n, seed)
    name = f"{n} random directions"
    for row in result["pairwise"]:
        if row["judge"] == judge.id and pair_null is not None:
            row["random"] = controls.control(name, row["accuracy"].estimate, pair_null).to_dict()
    for row in result["ratings"]:
        if row["judge"] == judge.id and row["spearman"] is not None and row["aspect"] in rating_null:
            row["random"] = controls.control(name, row["spearman"].estimate, rating_null[row["aspect"]]).to_dict()


def check_templates(names: Sequence[str] | None) -> list[str]:
    """The template names to try (default: every file in judges/template_files/), each checked to exist."""
    known = templates.names("rate") + templates.names("compare")
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise ValueError(f"unknown template(s) {unknown}; known: {known}")
    return list(names) if names else known


def template_candidates(judge, hs: HumanSet, out: str | Path, names: Sequence[str],
                        progress: bool = False) -> list[Verdicts]:
    """Each rating template (pairwise from its ratings) and comparison template (debiased pairwise) of an LLM
    judge on the set's pairs, named `rating:<template>` / `pairwise:<template>`."""
    if not hasattr(judge, "templates"):
        raise ValueError(f"judge {judge.id!r} has no templates (the probe reads no prompt); choose an LLM judge")
    keys = [(h.story_a, h.story_b) for h in hs.labels if h.choice is not None]
    found = []
    for name in names:
        if name.startswith("rate-"):
            _, ratings = collect(with_templates(judge, rate=name), hs, out, ("rating",), progress)
            found.append(agreement.pairwise_from_ratings(rating_values(ratings), keys, judge=f"rating:{name}"))
        else:
            prefs, _ = collect(with_templates(judge, compare=name), hs, out, ("pairwise",), progress)
            found += verdicts(f"pairwise:{name}", prefs, [], hs)
    return found
