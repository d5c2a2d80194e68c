"""Blinded pairwise human annotation: export a static page of story pairs, import the raters' results.

A pack is a folder with `index.html` (self-contained, works from file://, shows only opaque item ids and
story texts in a seeded random order) and `key.json` (which story is A and B for each item). Only the page
goes to raters; the key stays with whoever un-blinds. Results carry the pack id and the key's digest, so
the import refuses results of another pack and a key that was edited after export.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import itertools
import json
import random
import secrets
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from creative_eval.people.humans import CHOICES, load_labels
from creative_eval.records import CONDITIONS, HumanLabel, Story, append_jsonl, read_records, split_story_id, story_id

PAGE_FILE = "index.html"
KEY_FILE = "key.json"
RESULTS_FORMAT = "creative-eval-annotations/1"
KEY_FORMAT = "creative-eval-annotation-key/1"
TITLE = "Which story is more creative?"
_CSV_HEAD = ("format", "pack_id", "key_digest", "rater")  # repeated on every row of a downloaded CSV


class AnnotationError(ValueError):
    """Bad pack, key or results file; the message names the file and the fix."""


@dataclass(frozen=True)
class KeyItem:
    """One blinded item: the Story ids shown as A and as B."""

    id: str
    story_a: str
    story_b: str


@dataclass(frozen=True)
class Key:
    """Everything needed to un-blind a pack. `salt` makes the digest in the page unguessable."""

    pack_id: str
    salt: str
    seed: int
    stories_hash: str
    items: tuple[KeyItem, ...]
    format: str = KEY_FORMAT

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def comparisons_of(stories: Sequence[Story],
                   compare: Sequence[tuple[str, str]] | None = None) -> list[tuple[Story, Story]]:
    """Pairs of stories of the same prompt: the given condition pairs, or every pair of conditions present."""
    by_prompt: dict[str, dict[str, Story]] = {}
    for s in stories:
        if s.condition in by_prompt.setdefault(s.prompt_id, {}):
            raise AnnotationError(f"story {s.id} appears twice in the stories file; keep one per prompt and condition")
        by_prompt[s.prompt_id][s.condition] = s
    out = []
    for group in by_prompt.values():
        wanted = compare if compare is not None else itertools.combinations(sorted(group, key=_condition_rank), 2)
        out += [(group[a], group[b]) for a, b in wanted if a in group and b in group]
    if not out:
        raise AnnotationError("no prompt has two stories to compare; generate at least two conditions per prompt "
                              "(e.g. `creative-eval generate --conditions baseline,induced`) or fix --compare")
    return out


def _condition_rank(condition: str) -> tuple[int, str]:
    return (CONDITIONS.index(condition) if condition in CONDITIONS else len(CONDITIONS), condition)


def _story_rank(sid: str) -> tuple[tuple[int, str], str]:
    prompt_id, condition = split_story_id(sid)
    return _condition_rank(condition), prompt_id


def blind(pairs: Sequence[tuple[Story, Story]], *, seed: int, stories_hash: str) -> tuple[Key, list[dict[str, str]]]:
    """Shuffle item order and A/B sides with `seed`; return the key and the page items (texts only)."""
    rng = random.Random(seed)
    order = list(pairs)
    rng.shuffle(order)
    width = len(str(len(order)))
    key_items, page_items = [], []
    shared_prompt = all(a.prompt == b.prompt for a, b in order)  # differing prompts would reveal the condition
    for n, (x, y) in enumerate(order, 1):
        a, b = (x, y) if rng.random() < 0.5 else (y, x)
        name = f"q{n:0{width}d}"
        key_items.append(KeyItem(name, a.id, b.id))
        shown = {"id": name, "text_a": a.text, "text_b": b.text}
        page_items.append(shown | {"prompt": a.prompt} if shared_prompt else shown)
    key = Key(pack_id=secrets.token_hex(6), salt=secrets.token_hex(16), seed=seed, stories_hash=stories_hash,
              items=tuple(key_items))
    return key, page_items


def page(key: Key, items: list[dict[str, str]]) -> str:
    """The annotation page with its items inlined (escaped for a <script> block)."""
    data = {"format": RESULTS_FORMAT, "pack_id": key.pack_id, "key_digest": key.digest(), "title": TITLE,
            "items": items}
    blob = json.dumps(data, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        blob = blob.replace(raw, escaped)
    template = resources.files(__package__).joinpath("annotate_page.html").read_text(encoding="utf-8")
    return template.replace("/*PACK_DATA*/null", blob).replace("<title>Story comparison</title>",
                                                               f"<title>{html.escape(TITLE)}</title>")


def export(stories_path: str | Path, out_dir: str | Path, *, compare: Sequence[tuple[str, str]] | None = None,
           seed: int | None = None) -> Key:
    """Write `index.html` and `key.json` into out_dir, refusing to overwrite an existing key."""
    stories_path, out_dir = Path(stories_path), Path(out_dir)
    if (out_dir / KEY_FILE).exists():
        raise AnnotationError(f"{out_dir / KEY_FILE} exists: a pack is already there; choose another --out "
                              "(overwriting would orphan results collected with that pack)")
    stories = read_records(stories_path, Story)
    seed = secrets.randbelow(2**31) if seed is None else seed
    key, items = blind(comparisons_of(stories, compare), seed=seed,
                       stories_hash=hashlib.sha256(stories_path.read_bytes()).hexdigest())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PAGE_FILE).write_text(page(key, items), encoding="utf-8")
    (out_dir / KEY_FILE).write_text(json.dumps(asdict(key), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return key


def read_key(pack: str | Path) -> Key:
    """The key of a pack folder (or a key.json path)."""
    path = Path(pack)
    path = path / KEY_FILE if path.is_dir() else path
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != KEY_FORMAT:
            raise AnnotationError(f"{path}: not an annotation key (format {raw.get('format')!r}); pass the pack "
                                  f"folder written by `creative-eval annotate export`")
        return Key(**{**raw, "items": tuple(KeyItem(**i) for i in raw["items"])})
    except FileNotFoundError:
        raise AnnotationError(f"{path}: no key; pass the folder written by `creative-eval annotate export`") from None
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as e:
        raise AnnotationError(f"{path}: unreadable key ({e}); restore it from the export") from None


@dataclass(frozen=True)
class Results:
    """One downloaded results file: a rater's answers to items of one pack."""

    path: Path
    pack_id: str
    key_digest: str
    rater: str
    answers: tuple[dict[str, str], ...]


def read_results(path: str | Path) -> Results:
    """A results file downloaded from the page, as JSON or CSV."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise AnnotationError(f"{path}: empty; download the results again from the annotation page")
    try:
        head, rows = _from_json(text) if text.lstrip().startswith("{") else _from_csv(text)
    except (json.JSONDecodeError, csv.Error, ValueError) as e:
        raise AnnotationError(f"{path}: not a results file downloaded from the annotation page ({e})") from None
    if head.get("format") != RESULTS_FORMAT:
        raise AnnotationError(f"{path}: format {head.get('format')!r}, expected {RESULTS_FORMAT!r}; "
                              "pass the JSON or CSV file downloaded from the annotation page")
    rater = str(head.get("rater") or "").strip()
    if not rater:
        raise AnnotationError(f"{path}: no rater id; ask the rater to download again after entering one")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get("item") for r in rows):
        raise AnnotationError(f"{path}: an answer without an item id; download the file again from the page")
    answers = tuple({k: str(r.get(k) or "") for k in ("item", "choice", "comment")} for r in rows)
    return Results(path, str(head.get("pack_id")), str(head.get("key_digest")), rater, answers)


def _from_json(text: str) -> tuple[dict[str, Any], Any]:
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    return raw, raw.get("answers", [])


def _from_csv(text: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    heads = {tuple(r.get(k) for k in _CSV_HEAD) for r in rows}
    if len(heads) > 1:
        raise ValueError(f"rows disagree on {', '.join(_CSV_HEAD)}")
    return (dict(zip(_CSV_HEAD, heads.pop())) if heads else {}), rows


def canonical(story_a: str, story_b: str, choice: str) -> tuple[str, str, str]:
    """Order a pair by condition (CONDITIONS order), flipping the choice, so every pack labels it alike."""
    if _story_rank(story_a) <= _story_rank(story_b):
        return story_a, story_b, choice
    return story_b, story_a, {"A": "B", "B": "A"}.get(choice, choice)


def item_id(story_a: str, story_b: str) -> str:
    """The label's item id, `<prompt_id>:<condition a>-vs-<condition b>` (as for HANNA's pairs)."""
    prompt_id, condition_a = split_story_id(story_a)
    return story_id(prompt_id, f"{condition_a}-vs-{split_story_id(story_b)[1]}")


def unblind(key: Key, results: Results) -> list[HumanLabel]:
    """Check results against the key and turn them into HumanLabels in canonical pair order."""
    where = results.path
    if results.pack_id != key.pack_id:
        raise AnnotationError(f"{where}: results are for pack {results.pack_id!r} but the key is for pack "
                              f"{key.pack_id!r}; pass the pack folder these results were collected with")
    if results.key_digest != key.digest():
        raise AnnotationError(f"{where}: the key of pack {key.pack_id} was changed after export (digest mismatch); "
                              "restore the original key.json")
    items = {i.id: i for i in key.items}
    labels, seen = [], set()
    for answer in results.answers:
        name = answer["item"]
        if name not in items:
            raise AnnotationError(f"{where}: unknown item {name!r} (pack {key.pack_id} has {len(items)} items); "
                                  "the file was edited or mixed with another pack")
        if name in seen:
            raise AnnotationError(f"{where}: item {name!r} answered twice; keep one answer per item")
        if answer["choice"] not in CHOICES:
            raise AnnotationError(f"{where}: item {name!r} has choice {answer['choice']!r}; use one of {CHOICES}")
        seen.add(name)
        a, b, choice = canonical(items[name].story_a, items[name].story_b, answer["choice"])
        labels.append(HumanLabel(item_id=item_id(a, b), story_a=a, story_b=b, choice=choice, rater=results.rater,
                                 comment=answer["comment"].strip()))
    return labels


def import_results(pack: str | Path, paths: Iterable[str | Path], out: str | Path) -> list[HumanLabel]:
    """Un-blind every results file and append the new labels to `out` (JSONL of HumanLabel).

    Re-importing the same answers is a no-op, so an interrupted import can simply be run again;
    an answer that contradicts one already in `out` (or in another file) is refused."""
    key, out = read_key(pack), Path(out)
    done = {(h.rater, h.item_id): h for h in load_labels(out)} if out.exists() and out.stat().st_size else {}
    origin = {k: str(out) for k in done}
    todo: list[tuple[HumanLabel, str]] = []
    for path in paths:
        for label in unblind(key, read_results(path)):
            k = (label.rater, label.item_id)
            if k in done and done[k] != label:
                raise AnnotationError(f"{path}: rater {label.rater!r} answered {label.item_id} differently in "
                                      f"{origin[k]}; import only the rater's latest download, into a new --out")
            if k not in done:
                todo.append((label, str(path)))
            done[k], origin[k] = label, str(path)
    for label, _ in todo:
        append_jsonl(out, label)
    return [label for label, _ in todo]
