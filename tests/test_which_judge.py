"""`which-judge`: the table over `agreement` runs, built from the same rows `agreement` writes, with the verdict
rule checked on a judge that follows people and one that does not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from creative_eval import stats
from creative_eval.cli.main import main
from creative_eval.people import agreement as ag
from creative_eval.records import HumanLabel
from creative_eval.report import trust


def _pairwise_run(folder, n: int = 60):
    """People choose by a hidden quality; `follows` reads it (with noise), `coin` does not."""
    rng = np.random.default_rng(0)
    texts, labels, follows, margins, coin = {}, [], {}, {}, {}
    for i in range(n):
        a, b = f"p{i}:a", f"p{i}:b"
        texts[a], texts[b] = " ".join(["w"] * int(rng.integers(5, 40))), " ".join(["w"] * int(rng.integers(5, 40)))
        qa, qb = rng.normal(size=2)
        labels.append(HumanLabel(item_id=f"p{i}", story_a=a, story_b=b, choice="A" if qa > qb else "B", rater="r"))
        margins[(a, b)] = qa - qb + rng.normal(scale=1.0)
        follows[(a, b)] = "A" if margins[(a, b)] > 0 else "B"
        coin[(a, b)] = "A" if rng.random() < 0.5 else "B"
    judged = [ag.Verdicts(judge="follows", decisions=follows, margins=margins, margin_kind="quality"),
              ag.Verdicts(judge="coin", decisions=coin)]
    rows = ag.pairwise_agreement_table(judged, labels, texts, label="writing quality", seed=0, n_boot=200)
    _write(folder, {"set": "toy", "label": "writing quality", "n_labels": n, "pairwise": rows, "ratings": []})


def _rating_run(folder):
    rng = np.random.default_rng(1)
    truth = rng.normal(size=40)
    labels = [HumanLabel(item_id=f"s{i}#Surprise", story_a=f"s{i}", rating=float(t), rater="r")
              for i, t in enumerate(truth)]
    rows = (ag.rating_agreement("follows", {f"s{i}": float(t + rng.normal(scale=0.2)) for i, t in enumerate(truth)},
                                labels, n_boot=200)
            + ag.rating_agreement(ag.LENGTH_RATER, {f"s{i}": float(rng.normal()) for i in range(40)}, labels, n_boot=200))
    _write(folder, {"set": "toy-ratings", "label": "crowd creativity ratings", "n_labels": 40, "pairwise": [],
                    "ratings": rows})


def _write(folder, result):
    folder.mkdir()
    (folder / "agreement.json").write_text(json.dumps(stats.plain(result)), encoding="utf-8")


def test_verdicts_follow_the_rule(tmp_path):
    _pairwise_run(tmp_path / "pairs")
    _rating_run(tmp_path / "ratings")
    title, header, rows = trust.table(trust.read([tmp_path / "pairs", tmp_path / "ratings"]))
    verdict = {(r[0].split(" ")[0], r[1]): r[-1] for r in rows}
    assert verdict == {("toy", "follows"): "trust", ("toy", "coin"): "no", ("toy-ratings", "follows"): "trust"}
    assert all(not r[1].startswith(ag.TRIVIAL_JUDGES) for r in rows)  # trivial judges are the floor, not rows
    assert "n=60 pairs" in rows[0][0] and "writing quality" in rows[0][0]  # what people labelled, and n
    assert trust.recommendation(rows).startswith("Recommended: follows ")


def test_no_judge_trusted_everywhere_says_none(tmp_path):
    _pairwise_run(tmp_path / "pairs")
    rows = [r for r in trust.table(trust.read([tmp_path / "pairs"]))[2] if r[1] == "coin"]
    assert "none of the judges measured here" in trust.recommendation(rows)


def test_command_prints_and_writes_the_table(tmp_path, capsys):
    _pairwise_run(tmp_path / "pairs")
    out = tmp_path / "which-judge.md"
    assert main(["which-judge", str(tmp_path / "pairs"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| toy (writing quality, n=60 pairs) | follows |" in printed and f"wrote {out}" in printed
    assert out.read_text(encoding="utf-8") in printed


def test_a_folder_without_agreement_json_names_the_command(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["which-judge", str(tmp_path / "empty")]) == 2
    assert "creative-eval agreement --out" in capsys.readouterr().err
