"""Human labels: the file schema, its importer, and the HANNA adapter.

Schema (CSV with a header row, or JSONL with one object per line; the fields of `records.HumanLabel`):

| column    | required | meaning                                                                  |
|-----------|----------|--------------------------------------------------------------------------|
| `item_id` | yes      | the judged item (a pair id, or a story id with an aspect)                  |
| `story_a` | yes      | story id (`<prompt_id>:<condition>`) of the rated story, or the first of a pair |
| `story_b` | pairwise | story id of the second story of a pair; empty for a rating               |
| `choice`  | pairwise | `A`, `B` or `tie`: which of the two stories the rater found more creative  |
| `rating`  | rating   | a number (any scale; say which in `comment`)                              |
| `rater`   | no       | rater id; several raters of one item give several rows                   |
| `comment` | no       | free text                                                                |

A row is a pairwise preference (story_b and choice set, no rating) or a rating (rating set, no story_b/choice).

HANNA (`../shared/data/hanna`): `hanna_ratings` gives the three crowd raters' 1-5 scores of the 96
human-written stories; `hanna_pairs` gives, per prompt, the human-written story against each model's story.
HANNA has no human preference between those two stories, so their label is the *source*: "the human-written
story is the more creative one" — a reference label like induced-is-more-creative, not a judgement.

WQ (`../shared/data/wq`): `wq_pairs` gives the 150 distinct paragraph pairs of the WQ benchmark's style-mimic
split with the experts' choice. That label is *writing quality*, close to but not the same as creativity.
"""

from __future__ import annotations

import ast
import csv
import io
import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Sequence

from scipy.stats import spearmanr

from creative_eval import rater_stats, stats
from creative_eval.records import HumanLabel, Preference, Story, iter_jsonl, nfc_ids, read_text

CHOICES = ("A", "B", "tie")
# beside the checkout (../shared/data/hanna), or wherever $CREATIVE_EVAL_HANNA points
HANNA_DIR = Path(os.environ.get("CREATIVE_EVAL_HANNA", Path(__file__).resolve().parents[3] / "shared" / "data" / "hanna"))
# beside HANNA (../shared/data/wq), or wherever $CREATIVE_EVAL_WQ points
WQ_DIR = Path(os.environ.get("CREATIVE_EVAL_WQ", HANNA_DIR.parent / "wq"))
WQ_FILE = "wq_style-mimic.json"
WQ_RATER = "wq-expert"
WQ_COMMENT = "writing quality (expert preference): close to, but not the same as, creativity"
HANNA_ASPECTS = {"Relevance": "RE", "Coherence": "CH", "Empathy": "EM", "Surprise": "SU",
                 "Engagement": "EG", "Complexity": "CX"}
HUMAN_SOURCE = "human"
SOURCE_RATER = "hanna-source"  # the rater of reference labels (which story is human-written), not a judgement
ARTEFACTS = ("Human:", "###", "Assistant:")  # chat-format debris in some HANNA model stories


def has_artefacts(text: str) -> bool:
    """Chat artefacts ("Human:", "###", "Assistant:") in a story: the text is partly not a story at all."""
    return any(a in text for a in ARTEFACTS)
_FIELDS = [f.name for f in dataclasses.fields(HumanLabel)]


# ---------------------------------------------------------------- the importer


def load_labels(path: str | Path) -> list[HumanLabel]:
    """Read a human-label file (.csv or .jsonl), naming the file, line and fix of every bad row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"human-label file {path} not found; pass a .csv or .jsonl file")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
        _check_header(path, reader.fieldnames or [])
        rows = [(i, row) for i, row in enumerate(reader, 2)]
    elif path.suffix.lower() in (".jsonl", ".json"):
        rows = list(iter_jsonl(path))
    else:
        raise ValueError(f"{path}: unknown human-label format {path.suffix!r}; use .csv or .jsonl")
    labels = [_label(path, i, row) for i, row in rows]
    if not labels:
        raise ValueError(f"{path}: no human labels in the file; add rows (see creative_eval.humans for the schema)")
    return labels


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in ("item_id", "story_a") if c not in header]
    if missing:
        raise ValueError(f"{path}: header lacks column(s) {missing}; the columns are {_FIELDS}")
    if "choice" not in header and "rating" not in header:
        raise ValueError(f"{path}: header needs a 'choice' column (pairwise) or a 'rating' column (ratings)")


def _label(path: Path, line: int, row: dict) -> HumanLabel:
    where = f"{path}:{line}"
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object with fields {_FIELDS}")
    unknown = sorted(set(row) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; the fields are {_FIELDS}")
    clean = nfc_ids({k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()})
    clean = {k: v for k, v in clean.items() if v not in ("", None)}
    for key in ("item_id", "story_a"):
        if key not in clean:
            raise ValueError(f"{where}: {key} is empty; every row needs item_id and story_a")
    choice, rating = clean.get("choice"), clean.get("rating")
    if (choice is None) == (rating is None):
        raise ValueError(f"{where}: give exactly one of choice (pairwise) or rating; got "
                         f"choice={choice!r}, rating={rating!r}")
    if choice is not None:
        return _preference(where, clean, str(choice))
    if "story_b" in clean:
        raise ValueError(f"{where}: a rating row rates story_a only; leave story_b empty")
    try:
        value = float(rating)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: rating {rating!r} is not a number") from None
    if value != value:
        raise ValueError(f"{where}: rating is NaN; drop the row instead")
    return HumanLabel(**{**clean, "rating": value, "rater": str(clean.get("rater", ""))})


def _preference(where: str, clean: dict, choice: str) -> HumanLabel:
    canonical = {c.lower(): c for c in CHOICES}.get(choice.lower())
    if canonical is None:
        raise ValueError(f"{where}: choice {choice!r} is not one of {CHOICES}")
    if "story_b" not in clean:
        raise ValueError(f"{where}: a pairwise row needs story_b (the second story's id)")
    if clean["story_b"] == clean["story_a"]:
        raise ValueError(f"{where}: story_a and story_b are the same story {clean['story_a']!r}")
    return HumanLabel(**{**clean, "choice": canonical, "rater": str(clean.get("rater", ""))})


def load(spec: str | Path) -> list[HumanLabel]:
    """A human-label file, or "hanna" for HANNA's human-vs-model pairs and its crowd ratings."""
    if str(spec) == "hanna":
        return hanna_pairs() + hanna_ratings()
    return load_labels(spec)


def inter_rater_agreement(labels: Sequence[HumanLabel]) -> stats.Estimate | None:
    """Krippendorff's alpha (nominal, A/B/tie) among raters on shared items; None below two raters."""
    labels = [h for h in labels if h.choice in CHOICES]
    raters = sorted({h.rater for h in labels})
    items = sorted({h.item_id for h in labels})
    if len(raters) < 2:
        return None
    code = {c: float(i) for i, c in enumerate(CHOICES)}
    data = [[float("nan")] * len(items) for _ in raters]
    for h in labels:
        data[raters.index(h.rater)][items.index(h.item_id)] = code[h.choice]
    try:
        return rater_stats.krippendorff_alpha(data, level="nominal")
    except ValueError:  # no item rated twice, or a single category throughout
        return None


def as_preferences(labels: Sequence[HumanLabel], judge: str = "humans") -> list[Preference]:
    """Human pairwise choices as a judge's preferences, so humans get the same win-rate bars as judges
    (reference labels such as HANNA's human-written story are labels, not choices, and are left out)."""
    return [Preference(judge=judge, pair_id=h.item_id, story_a=h.story_a, story_b=h.story_b, decision=h.choice,
                       consistent=True)
            for h in labels if h.choice is not None and h.story_b and h.rater != SOURCE_RATER]


# ---------------------------------------------------------------- HANNA


def _hanna_file(root: str | Path, name: str) -> Path:
    path = Path(root) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the folder holding HANNA's {name} (e.g. ../shared/data/hanna)")
    return path


def hanna_prompts(root: str | Path = HANNA_DIR) -> list[tuple[str, str, dict[str, str]]]:
    """(prompt, human story, {model: model story}) per prompt, in the dataset's prompt order."""
    with _hanna_file(root, "hanna_llm_stories.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    by_prompt: dict[str, tuple[str, dict[str, str]]] = {}
    for i, row in enumerate(rows, 2):
        human, models = by_prompt.setdefault(row["Prompt"], (row["Human"], {}))
        if row["Human"] != human:
            raise ValueError(f"hanna_llm_stories.csv:{i}: two different human stories for one prompt")
        models[row["Model"]] = row["Story"]
    return [(prompt, human, models) for prompt, (human, models) in by_prompt.items()]


def hanna_stories(root: str | Path = HANNA_DIR) -> list[Story]:
    """Every HANNA story as a Story: prompt id `hanna-NN`, condition `human` or the generating model."""
    out = []
    for i, (prompt, human, models) in enumerate(hanna_prompts(root)):
        pid = f"hanna-{i:02d}"
        out += [Story(prompt_id=pid, condition=source, prompt=prompt, text=text,
                      settings={"source": "hanna", "chat_artefacts": has_artefacts(text)})
                for source, text in [(HUMAN_SOURCE, human), *models.items()]]
    return out


def hanna_pairs(root: str | Path = HANNA_DIR, seed: int = 0, keep_artefacts: bool = False) -> list[HumanLabel]:
    """Human-written vs model-written story for the same prompt, one label per (prompt, model).

    The label is the human-written story: a *source* label (see the module docstring), never a judgement of
    creativity by people. Model stories with chat artefacts ("Human:", "###", "Assistant:"; 28 of Llama-7b's
    96) are dropped unless `keep_artefacts`, since telling them apart measures the debris, not the writing.
    Which side the human story is shown on is drawn at random (fixed seed) so position bias cannot pass for
    agreement.
    """
    rng = random.Random(seed)
    labels = []
    for i, (_, _, models) in enumerate(hanna_prompts(root)):
        human_id = f"hanna-{i:02d}:{HUMAN_SOURCE}"
        for model, text in models.items():
            other = f"hanna-{i:02d}:{model}"
            if has_artefacts(text) and not keep_artefacts:
                rng.random()  # keep the sides of the other pairs where they were
                continue
            a, b, choice = (human_id, other, "A") if rng.random() < 0.5 else (other, human_id, "B")
            labels.append(HumanLabel(item_id=f"hanna-{i:02d}:human-vs-{model}", story_a=a, story_b=b, choice=choice,
                                     rater=SOURCE_RATER,
                                     comment="source label: the human-written story (not a judgement)"))
    return labels


def hanna_ratings(root: str | Path = HANNA_DIR, aspects: tuple[str, ...] = ("Surprise", "Complexity")) -> list[HumanLabel]:
    """The three crowd raters' 1-5 scores of the 96 human-written stories, one label per rater and aspect.

    The scores file lists stories by position only; the position is checked against the story texts through
    the file's own `Text length` column (rank correlation with the word counts must be >= 0.95).
    """
    unknown = [a for a in aspects if a not in HANNA_ASPECTS]
    if unknown:
        raise ValueError(f"unknown HANNA aspect(s) {unknown}; choose from {list(HANNA_ASPECTS)}")
    with _hanna_file(root, "hanna_metric_scores_llm.csv").open(encoding="utf-8", newline="") as f:
        human_row = next((r for r in csv.DictReader(f) if r["Model"] == "Human"), None)
    if human_row is None:
        raise ValueError("hanna_metric_scores_llm.csv has no row with Model == 'Human'")
    prompts = hanna_prompts(root)
    lengths = ast.literal_eval(human_row["Text length ¤§"])
    words = [len(human.split()) for _, human, _ in prompts]
    if len(lengths) != len(words) or spearmanr(lengths, words).statistic < 0.95:
        raise ValueError("HANNA scores do not line up with the stories' prompt order (text lengths disagree); "
                         "check that both files come from the same HANNA commit")
    labels = []
    for aspect in aspects:
        for rater in (1, 2, 3):
            scores = ast.literal_eval(human_row[f"Human {rater} {HANNA_ASPECTS[aspect]}"])
            labels += [HumanLabel(item_id=f"hanna-{i:02d}:{HUMAN_SOURCE}#{aspect}", story_a=f"hanna-{i:02d}:{HUMAN_SOURCE}",
                                  rating=float(s), rater=f"hanna-{rater}", comment=f"{aspect}, 1-5")
                       for i, s in enumerate(scores)]
    return labels


HANNA_PAIR_RATER = "hanna-crowd-mean"


def hanna_rating_pairs(aspect: str = "Surprise", root: str | Path = HANNA_DIR) -> tuple[list[Story], list[HumanLabel]]:
    """HANNA's human-written stories in pairs by the crowd's mean `aspect` rating: the story at rank k against the
    one at rank k + n/2, the higher-rated one chosen (a pair whose means are equal is left out). Each story is in
    one pair and every pair spans half the ranking, so a direction can be fitted on the crowd's ratings and
    cross-validated by pair. The label is derived from ratings: crowd `aspect`, mean of three raters."""
    labels = hanna_ratings(root, (aspect,))
    by_story: dict[str, list[float]] = {}
    for h in labels:
        by_story.setdefault(h.story_a, []).append(float(h.rating))
    ranked = sorted(by_story, key=lambda sid: (-sum(by_story[sid]) / len(by_story[sid]), sid))
    mean = {sid: sum(v) / len(v) for sid, v in by_story.items()}
    half = len(ranked) // 2
    pairs = []
    for k, (high, low) in enumerate(zip(ranked[:half], ranked[half: 2 * half])):
        if mean[high] == mean[low]:
            continue
        a, b, choice = (high, low, "A") if k % 2 else (low, high, "B")
        pairs.append(HumanLabel(item_id=f"{high}|{low}#{aspect}", story_a=a, story_b=b, choice=choice,
                                rater=HANNA_PAIR_RATER, comment=f"higher crowd {aspect} (mean of 3 raters, 1-5): "
                                                                f"{mean[high]:.2f} vs {mean[low]:.2f}"))
    stories = [s for s in hanna_stories(root) if s.id in by_story]
    return stories, pairs


# ---------------------------------------------------------------- WQ


def _wq_records(root: str | Path) -> dict[str, list[dict]]:
    """The file's records grouped by `original_id` (each pair appears twice, sides swapped), in file order."""
    path = Path(root) / WQ_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the folder holding WQ's {WQ_FILE} "
                                "(e.g. ../shared/data/wq) or set $CREATIVE_EVAL_WQ")
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    by_pair: dict[str, list[dict]] = {}
    for i, r in enumerate(records):
        missing = [k for k in ("original_id", "paragraph1", "paragraph2", "reference_preference") if k not in r]
        if missing:
            raise ValueError(f"{path}: record {i} lacks field(s) {missing}")
        by_pair.setdefault(str(r["original_id"]), []).append(r)
    return by_pair


def _wq_preferred(rec: dict, where: str) -> str:
    pref = str(rec["reference_preference"]).strip()
    if pref not in ("1", "2"):
        raise ValueError(f"{where}: reference_preference {rec['reference_preference']!r} is not '1' or '2'")
    return rec[f"paragraph{pref}"]


def _wq_pair(pair_id: str, copies: list[dict]) -> tuple[str, str, str, str]:
    """(paragraph 1, paragraph 2, preferred paragraph, author) of one pair, after checking its copies agree:
    the same two paragraphs and the same preferred text, whichever side each copy shows it on."""
    where = f"{WQ_FILE}: pair {pair_id!r}"
    first = copies[0]
    texts = {first["paragraph1"], first["paragraph2"]}
    if len(texts) != 2:
        raise ValueError(f"{where}: both paragraphs are the same text")
    preferred = _wq_preferred(first, where)
    for other in copies[1:]:
        if {other["paragraph1"], other["paragraph2"]} != texts:
            raise ValueError(f"{where}: its copies hold different paragraphs; the file is not the WQ style-mimic "
                             "split (check it against the source named in ../shared/README.md)")
        if _wq_preferred(other, where) != preferred:
            raise ValueError(f"{where}: its two copies prefer different paragraphs (ids "
                             f"{[c.get('id') for c in copies]}); the label is ambiguous, drop or fix that pair")
    return first["paragraph1"], first["paragraph2"], preferred, str(first.get("source") or "").strip()


def _wq_prompt(author: str) -> str:
    """A neutral instruction naming the imitated author, e.g. "Write a paragraph in the style of Ben Lerner."."""
    name = " ".join(author.replace("_", " ").split())
    return f"Write a paragraph in the style of {name}." if name else "Write a paragraph."


def wq_pairs(root: str | Path = WQ_DIR, seed: int = 0) -> tuple[list[Story], list[HumanLabel]]:
    """WQ's style-mimic pairs: two Stories (`wq-<original_id>:p1`/`:p2`) and one expert label per distinct pair.

    Each pair is in the file twice with the sides swapped; it is counted once, and its copies must agree on the
    preferred text. The preferred paragraph is put on side A for exactly half the pairs (which half is drawn
    with `seed`), so a judge's position bias cannot pass for agreement.
    """
    pairs = _wq_records(root)
    sides = [i < len(pairs) // 2 for i in range(len(pairs))]
    random.Random(seed).shuffle(sides)
    stories, labels = [], []
    for (pair_id, copies), preferred_first in zip(pairs.items(), sides):
        p1, p2, preferred, author = _wq_pair(pair_id, copies)
        pid = f"wq-{pair_id}"
        settings = {"source": "wq", "author": author, "wq_id": pair_id}
        stories += [Story(prompt_id=pid, condition=c, prompt=_wq_prompt(author), text=t, settings=settings)
                    for c, t in (("p1", p1), ("p2", p2))]
        good, bad = (f"{pid}:p1", f"{pid}:p2") if preferred == p1 else (f"{pid}:p2", f"{pid}:p1")
        a, b, choice = (good, bad, "A") if preferred_first else (bad, good, "B")
        labels.append(HumanLabel(item_id=pid, story_a=a, story_b=b, choice=choice, rater=WQ_RATER,
                                 comment=WQ_COMMENT))
    return stories, labels


def wq_order(seed: int = 0, root: str | Path = WQ_DIR) -> tuple[list[Story], list[HumanLabel]]:
    """Every WQ pair, labels in a seeded order that alternates the preferred side (B, A, B, ...): any first n
    of them is `wq_sample(n, seed)`, so `--limit n` over this order stays balanced over sides."""
    stories, labels = wq_pairs(root, seed)
    rng = random.Random(seed)
    on_a = [h for h in labels if h.choice == "A"]
    on_b = [h for h in labels if h.choice == "B"]
    rng.shuffle(on_a)
    rng.shuffle(on_b)
    return stories, [h for pair in zip(on_b, on_a) for h in pair] + on_b[len(on_a):] + on_a[len(on_b):]


def wq_sample(n: int, seed: int = 0, root: str | Path = WQ_DIR) -> tuple[list[Story], list[HumanLabel]]:
    """A fixed small judging set: the first n of a seeded order of the distinct WQ pairs that alternates the
    preferred side (B, A, B, ...), so half have it on side A (n odd: one more B) and a smaller sample is
    always part of a larger one (judgements made for 40 pairs count toward 80). In the file's pair order."""
    stories, order = wq_order(seed, root)
    if not 1 <= n <= len(order):
        raise ValueError(f"wq_sample: n={n} must lie between 1 and the {len(order)} WQ pairs")
    chosen = {h.item_id for h in order[:n]}
    keep = [h for h in wq_pairs(root, seed)[1] if h.item_id in chosen]
    return [s for s in stories if s.prompt_id in chosen], keep
