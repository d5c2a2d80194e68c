"""Judges: parsing, the HF backend on the tiny model, presets, the store and resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from creative_eval import judges
from creative_eval.judges import base, presets, store
from creative_eval.judges.hf import HFJudge
from creative_eval.records import Story, mend_tail
from conftest import kill_after_lines


def stories(n: int = 4) -> list[Story]:
    return [Story(prompt_id=f"p{i}", condition=c, prompt="Write a news story.", text=f"The space tanker {c} {i} crashes.") for i in range(n)
            for c in ("baseline", "induced")]


def test_parse_digit_prefers_brackets_and_rejects_garbage():
    assert base.parse_digit("I'd say 3, final [7]") == "7"
    assert base.parse_digit("Score: 12 then 4") == "4"
    assert base.parse_digit("no idea") is None
    r = base.rating_from_probs("j", stories(1)[0], [(None, "no idea")], "h", 0.0)
    assert r.status.startswith("invalid") and r.expected is None


def test_expected_score_renormalises():
    e, k = base.expected_and_argmax([0, 0, 0.2] + [0] * 6 + [0.2])
    assert e == pytest.approx(5.5) and k == 2


def test_debiased_decision_follows_the_difference_not_the_position():
    item = base.PairItem(*stories(1))
    p = base.preference("j", item, 0.9, 0.2, "h", 0)
    assert p.decision == "A" and p.consistent is True and p.p_a == pytest.approx(0.85)
    # P(first) = 0.87 in both orders: position bias cancels, nothing is left -> a tie at tie_band 0
    p = base.preference("j", item, 0.87, 0.87, "h", 0)
    assert p.p_a == pytest.approx(0.5) and p.decision == "tie" and p.consistent is False
    # 0.88 with A first, 0.86 with B first: A named first more often -> A, though both orders name the first
    p = base.preference("j", item, 0.88, 0.86, "h", 0)
    assert p.p_a == pytest.approx(0.51) and p.decision == "A" and p.consistent is False
    assert base.preference("j", item, 0.86, 0.88, "h", 0).decision == "B"
    # the tie band: |P(A>B) - 1/2| must exceed it
    assert base.preference("j", item, 0.88, 0.86, "h", 0, tie_band=0.02).decision == "tie"
    assert base.preference("j", item, 0.95, 0.86, "h", 0, tie_band=0.02).decision == "A"
    # parse mode (1/0 answers): orders that disagree are a tie, as before
    assert base.preference("j", item, 1.0, 1.0, "h", 0).decision == "tie"
    assert base.preference("j", item, None, 0.3, "h", 0).status.startswith("invalid")


class FixedJudge(base.Judge):
    """Answers by template and by the story shown first: P(first) = 0.87 when the first text holds 'induced'
    under the first template, 0.85 otherwise; the second template always 0.5."""

    def _ask(self, texts, labels):
        out = []
        for t in texts:
            if len(labels) == 2:
                p = 0.5 if t.startswith("Text 1:") else (0.87 if t.index("induced") < t.index("baseline") else 0.85)
                out.append(([p, 1 - p], None))
            else:
                out.append(([1.0 if k == (2 if "Rate the writing" in t else 6) else 0.0 for k in range(10)], None))
        return out


def test_compare_in_both_orders_and_ensemble_averages_templates():
    item = judges.pairs_by_condition(stories(1), "induced", "baseline")
    (p,) = FixedJudge("f").compare(item)
    assert (p.p_first_ab, p.p_first_ba, p.decision) == (0.87, 0.85, "A") and p.p_a == pytest.approx(0.51)
    both = FixedJudge("f", base.Templates.named(compare="ensemble"))
    names = judges.templates.names("compare")
    (q,) = both.compare(item)
    # compare-short starts "Text 1:" (always 0.5); the others answer 0.87 / 0.85
    k = len(names) - 1
    assert q.p_first_ab == pytest.approx((0.87 * k + 0.5) / len(names))
    assert q.template_hash == both.hash_for("pairwise") != p.template_hash
    (r,) = FixedJudge("f", base.Templates.named(rate="ensemble")).rate(stories(1)[:1])
    n_rate = len(judges.templates.names("rate"))  # rate-short says 2, the others 6
    assert r.expected == pytest.approx((6 * (n_rate - 1) + 2) / n_rate)


def test_templates_are_files_with_their_placeholders(tmp_path):
    from creative_eval.judges import templates

    assert {"rate-creative", "rate-short"} <= set(templates.names("rate"))
    assert "compare-creative" in templates.names("compare")
    assert base.Templates().rate == (templates.text("rate-creative"),)
    assert len({templates.template_hash([templates.text(n)]) for n in templates.names("rate")}) == len(
        templates.names("rate"))
    with pytest.raises(ValueError, match="known templates"):
        templates.text("rate-nope")
    with pytest.raises(ValueError, match="not a rate template"):
        templates.resolve("compare-creative", "rate")
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: hf\ntemplate_rate: rate-nope\n")
    with pytest.raises(presets.PresetError, match="template_rate"):
        presets.load(bad)


def test_hf_judge_digits_need_single_tokens(tiny):
    model, tok = tiny
    judge = HFJudge("tiny", model, tok)
    try:
        ratings = judge.rate(stories(2))
    except ValueError as e:
        assert "single tokens" in str(e)
    else:
        assert all(r.status == "ok" and 0 <= r.expected <= 9 for r in ratings)


def test_bad_preset_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: hf\nmodle: x\n")
    with pytest.raises(presets.PresetError, match=r"bad.yaml.*modle"):
        presets.load(bad)
    bad.write_text("backend: nope\n")
    with pytest.raises(presets.PresetError, match="backend"):
        presets.load(bad)
    assert presets.load("embedded")["backend"] == "hf"


def test_every_shipped_preset_loads_with_its_templates():
    shipped = sorted(presets.PRESET_DIR.glob("*.yaml"))
    assert len(shipped) >= 8
    loaded = {p.stem: presets.load(p.stem) for p in shipped}
    assert loaded["embedded-quality"]["template_rate"] == "rate-quality"


@pytest.mark.real
def test_embedded_rating_pairwise_and_resume(embedded, tmp_path):
    model, tok = embedded
    judge = judges.load_judge("embedded", model, tok)
    items = stories(3)
    out = tmp_path / "r.jsonl"
    first = judges.run(judge, "rating", items[:4], out)
    assert len(first) == 4 and all(r["status"] == "ok" for r in first)
    calls = []
    orig = judge.rate
    judge.rate = lambda xs: calls.append(len(xs)) or orig(xs)
    again = judges.run(judge, "rating", items, out)
    assert len(again) == 6 and calls == [2]
    prefs = judge.compare(judges.pairs_by_condition(items))
    assert len(prefs) == 3 and all(p.decision in ("A", "B", "tie") for p in prefs)


# The writer: the tiny judge over stories(6), one record per chunk, slowed so the parent can kill it midway.
WRITER = """
import sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from conftest import tiny_llama, tiny_tokenizer
from test_judges import stories
from creative_eval import judges
from creative_eval.judges.hf import HFJudge
tok = tiny_tokenizer()
judge = HFJudge("tiny", tiny_llama(vocab=len(tok)), tok)
rate = judge.rate
judge.rate = lambda xs: time.sleep(0.3) or rate(xs)
judges.run(judge, "rating", stories(6), {out!r}, chunk=1)
"""


def test_sigkill_mid_run_then_resume_loses_and_repeats_nothing(tiny, tmp_path):
    out = tmp_path / "ratings.jsonl"
    code = WRITER.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed = kill_after_lines(proc, out, 3)
    n_done = killed.count(b"\n")
    assert 3 <= n_done < 12 and killed.endswith(b"\n")
    with out.open("ab") as f:  # what a kill in the middle of a write leaves behind
        f.write(b'{"key": "tiny|torn')

    model, tok = tiny
    judge = HFJudge("tiny", model, tok)
    asked = []
    rate = judge.rate
    judge.rate = lambda xs: asked.extend(s.id for s in xs) or rate(xs)
    recs = judges.run(judge, "rating", stories(6), out)

    final = out.read_bytes()
    assert final.startswith(killed), "records written before the kill changed"
    keys = [r["key"] for r in recs]
    expected = {store.rating_key("tiny", judge.hash_for("rating"), s) for s in stories(6)}
    assert len(keys) == 12 and set(keys) == expected  # each judgement exactly once
    assert len(asked) == 12 - n_done  # nothing finished before the kill was judged again
    assert b"torn" not in final


def test_torn_tail_is_cut_and_whole_last_record_kept(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"key": "a"}\n{"key": "b"')
    mend_tail(path)
    assert path.read_bytes() == b'{"key": "a"}\n'
    path.write_bytes(b'{"key": "a"}\n{"key": "b"}')
    mend_tail(path)
    assert path.read_bytes() == b'{"key": "a"}\n{"key": "b"}\n'


def test_cli_pairwise_prints_biases_and_resumes(embedded, tmp_path, capsys):
    from creative_eval.cli import main
    from creative_eval.records import write_jsonl

    write_jsonl(tmp_path / "s.jsonl", stories(3))
    args = ["judge", "--judge", "probe", "--mode", "pairwise", "--input", str(tmp_path / "s.jsonl"),
            "--out", str(tmp_path / "p.jsonl")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "3 judgements" in printed and "position consistency: 1.00" in printed and "longer wins: –" in printed
    assert "position bias" not in printed  # the probe has no P(first)
    assert main(args) == 0  # resumed: nothing new
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3
    assert "win rate " in printed and "(n too small for a CI) (n=" in printed  # 3 pairs: no interval shown


def test_cli_rating_prints_the_mean_per_condition(embedded, tmp_path, capsys):
    from creative_eval.cli import main
    from creative_eval.records import write_jsonl

    write_jsonl(tmp_path / "s.jsonl", stories(3))
    preset = tmp_path / "scaled.yaml"  # a 0-9 rating from the probe score, so the mean has a scale
    preset.write_text("backend: probe\nmodel: embedded\nscale: [-1.0, 1.0]\n", encoding="utf-8")
    assert main(["judge", "--judge", str(preset), "--mode", "rating", "--input", str(tmp_path / "s.jsonl"),
                 "--out", str(tmp_path / "r.jsonl")]) == 0
    printed = capsys.readouterr().out
    for condition in ("baseline", "induced"):
        assert f"mean rating, {condition}: " in printed and "(n too small for a CI) (n=3 prompts)" in printed
