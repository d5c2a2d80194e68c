"""Which judge to trust: one table over every `agreement` run (one per human set), each judge beside the set's
best trivial judge, its length sensitivity, and a verdict by one written rule — AlpacaEval's annotator table,
built from files so that README's copy is regenerated, never typed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from creative_eval.people.agreement import LENGTH_RATER, TRIVIAL_JUDGES
from creative_eval.report.render import Table, fmt_estimate

HEADER = ["set (what people labelled)", "judge", "agreement with people [95% CI]", "best trivial judge",
          "agree when people chose the longer / the shorter", "length-controlled coef. [95% CI]", "verdict"]
RULE = ("trust: the CI's low end is above the best trivial judge's estimate and, for pairs, the length-controlled "
        "coefficient's CI is above 0 (for ratings: above the length-in-words rater); length: it beats the trivial "
        "judge but length may explain it; no: it does not beat the trivial judge")


def read(folders: list[str | Path]) -> list[dict[str, Any]]:
    """Each folder's agreement.json (written by `creative-eval agreement --out FOLDER`)."""
    found = []
    for folder in folders:
        path = Path(folder) / "agreement.json"
        if not path.is_file():
            raise ValueError(f"{folder}: no agreement.json; write one with `creative-eval agreement --out {folder}`")
        found.append(json.loads(path.read_text(encoding="utf-8")))
    return found


def _low_above(e: dict | None, floor: float) -> bool:
    return bool(e) and e.get("ci_low") is not None and e["ci_low"] > floor


def _pairwise_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = result["pairwise"]
    trivial = [r for r in rows if r["judge"].startswith(TRIVIAL_JUDGES)]
    if not trivial:  # a ratings-only set
        return []
    best = max(trivial, key=lambda r: r["accuracy"]["estimate"])
    floor = best["accuracy"]["estimate"]
    out = []
    for r in rows:
        if r["judge"].startswith(TRIVIAL_JUDGES):
            continue
        lc = r["length_logit"]
        verdict = ("no" if not _low_above(r["accuracy"], floor) else
                   "trust" if _low_above(lc, 0.0) else "length")
        sides = " / ".join(fmt_estimate(r[k]) for k in ("agree_when_longer_chosen", "agree_when_shorter_chosen"))
        coef = "–" if lc.get("coef") is None else f"{lc['coef']:+.2f} [{lc['ci_low']:+.2f}, {lc['ci_high']:+.2f}]"
        out.append([f"{result['set']} ({result['label']}, n={r['n']} pairs)", r["judge"], fmt_estimate(r["accuracy"]),
                    f"{best['judge']} {floor:.2f}", sides, coef, verdict])
    return out


def _rating_rows(result: dict[str, Any]) -> list[list[str]]:
    length = {r["aspect"]: r["spearman"] for r in result["ratings"] if r["judge"] == LENGTH_RATER}
    out = []
    for r in result["ratings"]:
        if r["judge"] == LENGTH_RATER:
            continue
        floor = length[r["aspect"]]["estimate"]
        verdict = "trust" if _low_above(r["spearman"], floor) else "no"
        out.append([f"{result['set']} ({r['label']}: {r['aspect']}, Spearman, n={r['n']} stories)", r["judge"],
                    fmt_estimate(r["spearman"]), f"{LENGTH_RATER} {floor:.2f}", "–", "–", verdict])
    return out


def recommendation(rows: list[list[str]]) -> str:
    """The judge to use by default: trusted on every set it was measured on, else an honest 'none'."""
    judges = {r[1] for r in rows}
    trusted = sorted(j for j in judges if all(r[6] == "trust" for r in rows if r[1] == j))
    if trusted:
        return f"Recommended: {', '.join(trusted)} (trusted on every set it was measured on)."
    partly = sorted(j for j in judges if any(r[6] == "trust" for r in rows if r[1] == j))
    some = f" Trusted on some sets only: {', '.join(partly)}." if partly else ""
    return ("Recommended: none of the judges measured here beats the trivial judges on every set; report them beside "
            "the trivial judges and use a larger judge (a preset such as llama3-70b) for claims." + some)


def table(results: list[dict[str, Any]]) -> Table:
    rows = [row for result in results for row in _pairwise_rows(result) + _rating_rows(result)]
    return f"Which judge to trust ({RULE})", HEADER, rows
