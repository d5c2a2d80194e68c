"""`demo`: the main job end to end on the embedded model, the data path in one readable place.

pairs -> direction -> {steered stories, probe scores} -> judgements (self-judge, probe, human-calibrated probe)
-> stats -> report.
Every stage writes its records as it goes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from creative_eval import outputs
from creative_eval.cli import args as a
from creative_eval.steering import settings

COMPARISONS = (("induced", "baseline"), ("creative", "baseline"))
HELD_OUT_JUDGE = "probe-humans-heldout"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job end to end (default: the embedded model; a minute with "
                                    "--n 4 --max-new-tokens 32)")
    a.model_args(p)
    p.add_argument("--n", type=a.positive_int, default=30, help="number of test prompts")
    p.add_argument("--max-new-tokens", type=a.positive_int, default=128, help="tokens per story at most")
    p.add_argument("--alpha", type=a.finite, default=settings.DEFAULT_ALPHA,
                   help="lambda, the steering strength, relative to the mean residual norm at the layer")
    p.add_argument("--wq", type=a.count, default=40,
                   help="WQ expert pairs for the agreement-with-people panel (0: none)")
    p.add_argument("--judge-direction", type=a.direction_source, default="auto",
                   help="the frontier's other-source probe: auto (3 layers before the steering layer), "
                        "humans (the human-calibrated direction), stories or a direction file")
    p.add_argument("--out", default="reports/demo", help="run and report folder (a re-run resumes)")
    p.set_defaults(run=run, outputs=lambda args: outputs.check_folder(args.out))


def run(args: argparse.Namespace) -> None:
    from creative_eval import report

    path = demo(args.out, n=args.n, max_new_tokens=args.max_new_tokens, steering=settings.Steering(args.alpha),
                wq_pairs=args.wq, model_id=args.model, dtype=args.dtype, device_map=args.device_map,
                judge_direction=args.judge_direction)
    report.print_summary(report.read_summary(path)["summary"])
    print(f"report: {path} (figure: {path.parent / 'figure1.png'})")


def judge_all(judge, stories: Sequence, pair_items: Sequence, out: Path) -> tuple[list, list]:
    """One judge's ratings of every story and preferences on every pair, persisted and resumed by key (records
    of other templates in the same files are left out)."""
    from creative_eval import judges
    from creative_eval.records import Rating, from_dict

    rated = judges.run(judge, "rating", stories, out / f"ratings-{judge.id}.jsonl", progress=True)
    return ([from_dict(Rating, r) for r in rated if r["template_hash"] == judge.hash_for("rating")],
            compare_all(judge, pair_items, out))


def compare_all(judge, pair_items: Sequence, out: Path) -> list:
    """One judge's preferences on every pair, persisted and resumed by key (other templates' left out)."""
    from creative_eval import judges
    from creative_eval.records import Preference, from_dict

    compared = judges.run(judge, "pairwise", pair_items, out / f"preferences-{judge.id}.jsonl", progress=True)
    return [from_dict(Preference, r) for r in compared if r["template_hash"] == judge.hash_for("pairwise")]


def held_out_humans_judge(model, tokenizer, model_id: str, wq_stories: Sequence):
    """The `probe-humans` judge with its direction fitted on the WQ pairs outside the demo's sample (and outside
    every pair sharing a text with it), so its agreement on the sample is measured on pairs it never saw."""
    from creative_eval import judges, sources
    from creative_eval.judges import presets

    held = frozenset(s.prompt_id for s in wq_stories)
    d, _ = sources.humans_direction(model, tokenizer, model_id, held_out=held, progress=True)
    return judges.load_judge({**presets.load("probe-humans"), "id": HELD_OUT_JUDGE}, model, tokenizer, direction=d), d


def demo(out: str | Path = "reports/demo", n: int = 30, max_new_tokens: int = 128,
         steering: settings.Steering = settings.Steering(), wq_pairs: int = 40, seed: int = 0,
         model_id: str = "embedded", dtype: str | None = None, device_map: str | None = None,
         judge_direction: str = "auto") -> Path:
    """The main job on `model_id` (default the embedded model); returns the report's path.

    Stories for `n` test prompts in three conditions, judged by the model itself (0-9 rating, pairwise in both
    orders, position-debiased) and by the probe; with WQ present, both judges also compare `wq_pairs` expert-
    labelled paragraph pairs (a fixed sample), beside the human-calibrated probe fitted on the other WQ pairs,
    so the report shows agreement with people (writing quality) beside the length and random baselines. The steering frontier's other-source probe is `judge_direction`."""
    from creative_eval import judges, models, pairs, report, sources
    from creative_eval.evals import frontier
    from creative_eval.people import humans
    from creative_eval.probe import controls, textstates
    from creative_eval.steering import generate

    out = Path(out)
    model, tokenizer = models.load(model_id, dtype, device_map)
    d, d_path = sources.resolve("auto", model, tokenizer, model_id, progress=True)
    selected = pairs.load_pairs(pairs.SHIPPED, "test")[:n]
    sampling = generate.Sampling(max_new_tokens, seed=seed)
    stories = generate.resume(out / "stories.jsonl", model, tokenizer, selected, d, steering=steering,
                              sampling=sampling, model_id=model_id, direction_file=d_path, progress=True)
    items = [item for x, y in COMPARISONS for item in judges.pairs_by_condition(stories, x, y)]
    have_wq = wq_pairs and (humans.WQ_DIR / humans.WQ_FILE).is_file()
    wq_stories, labels = humans.wq_sample(wq_pairs, seed) if have_wq else ([], [])
    by_id = {s.id: s for s in wq_stories}
    items += [judges.PairItem(by_id[h.story_a], by_id[h.story_b]) for h in labels]
    ratings, preferences = judge_all(judges.load_judge("self", model, tokenizer), stories, items, out)
    probe_judge = judges.load_judge("probe", model, tokenizer)
    probe_ratings, probe_preferences = judge_all(probe_judge, stories, items, out)
    probe_scores = {r.story_id: r.score for r in probe_ratings if r.score is not None}
    states = textstates.story_states(model, tokenizer, stories, d)
    meta = {"direction_file": d_path, **{f"direction_{k}": v for k, v in d.meta.items()},
            "probe_tokens": "input+response for stories of one prompt; response only for stories of different prompts",
            **controls.describe(controls.condition_comparisons(stories, *states, d.vector, "input+response"))}
    if labels:
        meta["human_label"] = f"WQ experts' writing-quality preference, {len(labels)} pairs (seed {seed})"
        humans_judge, hd = held_out_humans_judge(model, tokenizer, model_id, wq_stories)
        probe_preferences += compare_all(humans_judge, items, out)
        meta[HELD_OUT_JUDGE] = (f"probe, humans direction at layer {hd.layer} (response tokens) fitted on the "
                                f"{hd.meta['n_pairs']} WQ pairs that share no text with these {len(labels)}")
    steering_frontier = frontier.demo(model, tokenizer, d, selected, out / "frontier", model_id=model_id,
                                      judge_direction=judge_direction)
    report.write_frontier(steering_frontier, out / "frontier")
    return report.build(out.name, stories, ratings, preferences + probe_preferences, probe_scores, labels,
                        meta, out_root=out.parent, human_stories=wq_stories, frontier=steering_frontier)
