"""Judge prompt templates as data: one text file per phrasing in `judges/template_files/`.

A file `rate-<name>.txt` is a rating phrasing (placeholders `{story}`, optionally `{prompt}`); `compare-<name>.txt`
a comparison phrasing (`{first}`, `{second}`, optionally `{prompt}`). A preset names one file by its stem, or
`ensemble` for every phrasing of that kind (the judge averages their label probabilities). Every record
carries the hash of the exact text(s) it was judged with, so changing a phrasing never mixes judgements.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

TEMPLATE_DIR = Path(__file__).resolve().parent / "template_files"
KINDS = ("rate", "compare")
ENSEMBLE = "ensemble"
DEFAULT = {"rate": "rate-creative", "compare": "compare-creative"}
REQUIRED = {"rate": ("{story}",), "compare": ("{first}", "{second}")}


def names(kind: str) -> list[str]:
    """The template names (file stems) of one kind, sorted."""
    if kind not in KINDS:
        raise ValueError(f"template kind {kind!r} is not one of {KINDS}")
    return sorted(p.stem for p in TEMPLATE_DIR.glob(f"{kind}-*.txt"))


def text(name: str) -> str:
    """A template's text, checked for the placeholders its kind needs."""
    kind = name.split("-", 1)[0]
    path = TEMPLATE_DIR / f"{name}.txt"
    if kind not in KINDS or not path.is_file():
        raise ValueError(f"judge template {name!r}: no file {path}; known templates: "
                         f"{names('rate') + names('compare')} or {ENSEMBLE!r}")
    body = path.read_text(encoding="utf-8")
    missing = [p for p in REQUIRED[kind] if p not in body]
    if missing:
        raise ValueError(f"{path}: lacks placeholder(s) {missing}; a {kind} template needs {list(REQUIRED[kind])}")
    return body


def resolve(spec: str | None, kind: str) -> tuple[str, ...]:
    """The texts a preset's template field means: one named template, every template of the kind for
    `ensemble`, or the kind's default when the field is absent."""
    spec = spec or DEFAULT[kind]
    if spec == ENSEMBLE:
        return tuple(text(n) for n in names(kind))
    if not spec.startswith(f"{kind}-"):
        raise ValueError(f"judge template {spec!r} is not a {kind} template; choose from {names(kind)} or {ENSEMBLE!r}")
    return (text(spec),)


def template_hash(texts: Sequence[str]) -> str:
    """12 hex digits identifying the exact text(s), in order: the `template_hash` of every record judged with them."""
    return hashlib.sha256("\0\0".join(texts).encode()).hexdigest()[:12]
