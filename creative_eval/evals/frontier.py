"""The creativity-coherence frontier of steering: what each way of steering buys in creativity, judged by
others than the steering direction, and what it costs in coherence, beside a random direction at matched norm.

Every arm generates from the same negated test prompts with the same seeds; each story is then measured by
judges that are not the steering direction (a pairwise judge against the unsteered story of the same prompt,
a 0-9 rating, a probe from another layer or source), by coherence measures (perplexity under the unsteered
model, repeated n-grams, distinct n-grams, a judge's coherence rating) and by its length. `frontier_stats`
turns the per-story table into per-arm estimates and the recommended lambda; `report.frontier` draws it.

    result = frontier.run(model, tokenizer, pairs, d, judge_d, plan(...), out="reports/frontier", ...)
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import judges, sources, steering
from creative_eval.direction import Direction
from creative_eval.evals import coherence, frontier_stats
from creative_eval.probe import Probe
from creative_eval.records import Pair, Preference, Rating, Story, append_jsonl, from_dict, read_records, write_jsonl
from creative_eval.steering import gating, generate

KINDS = ("baseline", "real", "random", "negated")


@dataclass(frozen=True)
class Arm:
    """One way to generate from the negated prompts: a direction (`real`, a `random` unit vector or the
    `negated` real one) at lambda `alpha`, `layer` (None: the steering direction's), `positions`, and an
    optional probe gate (steer only while the running probe mean is below `gate`)."""

    kind: str
    alpha: float = 0.0
    layer: int | None = None
    positions: str = "all"
    gate: float | None = None
    gate_window: int = 16

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"arm kind {self.kind!r} is not one of {KINDS}")
        steering.check(self.alpha, positions=self.positions)
        if self.gate is not None:
            gating.Gate(self.gate, self.gate_window)

    @property
    def name(self) -> str:
        """The stories' condition: e.g. `real-0.2`, `random-0.2`, `real-0.2-generated`, `real-0.2-L12`,
        `real-0.2-gate-0.1`."""
        if self.kind == "baseline":
            return "baseline"
        parts = [self.kind, f"{self.alpha:g}"]
        parts += [self.positions] if self.positions != "all" and self.gate is None else []
        parts += [f"L{self.layer}"] if self.layer is not None else []
        parts += [f"gate{self.gate:+g}w{self.gate_window}"] if self.gate is not None else []
        return "-".join(parts)


def plan(alphas: Sequence[float], *, at: float = steering.DEFAULT_ALPHA, layers: Sequence[int] = (),
         positions: Sequence[str] = (), gate: float | None = None, gate_window: int = 16,
         gate_alpha: float | None = None, negated: bool = False) -> list[Arm]:
    """The arms of a frontier: the baseline; real and random (and optionally negated) at every alpha; at
    `at`: the real direction at other `positions` and `layers` (and at positions `generated`, which a gate
    steers, when gated); gated at `gate_alpha` (default `at`)."""
    arms = [Arm("baseline")]
    for alpha in alphas:
        arms += [Arm("real", alpha), Arm("random", alpha)] + ([Arm("negated", alpha)] if negated else [])
    if gate is not None and "generated" not in positions:
        positions = [*positions, "generated"]
    arms += [Arm("real", at, positions=p) for p in positions if p != "all"]
    arms += [Arm("real", at, layer=layer) for layer in layers]
    arms += [Arm("real", at if gate_alpha is None else gate_alpha, gate=gate, gate_window=gate_window)
             ] if gate is not None else []
    return list(dict.fromkeys(arms))


def random_direction(d: Direction, seed: int = 0) -> Direction:
    """A random unit vector at the same layer with the same metadata, so every norm mode scales it exactly
    like `d` (the control at matched norm)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d.vector.shape, generator=g, dtype=torch.float64)
    return Direction((v / v.norm()).to(d.vector.dtype), {**d.meta, "source": f"random unit vector, seed {seed}"})


def steer_for(arm: Arm, directions: dict[int, Direction], default_layer: int, norm: str,
              seed: int = 0) -> steering.Steer | None:
    """The injection of an arm (None for the baseline)."""
    if arm.kind == "baseline":
        return None
    d = directions[arm.layer if arm.layer is not None else default_layer]
    if arm.kind == "random":
        d = random_direction(d, seed)
    elif arm.kind == "negated":
        d = Direction(-d.vector, d.meta)
    return steering.Steer.from_direction(d, arm.alpha, norm, "generated" if arm.gate is not None else arm.positions)


def _settings(arm: Arm, sampling: generate.Sampling, norm: str, seed: int) -> dict[str, Any]:
    return {**dataclasses.asdict(arm), "arm": arm.name, "norm": norm, "random_seed": seed, **sampling.__dict__}


def arm_stories(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair], arm: Arm,
                steer: steering.Steer | None, *, sampling: generate.Sampling, norm: str, seed: int, template: bool,
                path: Path) -> list[Story]:
    """The arm's stories, read back from `path` when all are there with the same settings, else generated
    (same prompts, same seeds as every other arm) and appended."""
    want = _settings(arm, sampling, norm, seed)
    done = {s.prompt_id: s for s in (read_records(path, Story) if path.is_file() else [])
            if s.condition == arm.name and all(s.settings.get(k) == v for k, v in want.items())}
    if {p.id for p in pairs} <= set(done):
        return [done[p.id] for p in pairs]
    prompts = [p.uncreative for p in pairs]
    gate = gating.Gate(arm.gate, arm.gate_window) if arm.gate is not None else None
    gens = generate.generate(model, tokenizer, prompts, steers=[steer] if steer else [], gate=gate,
                             sampling=sampling, template=template, progress=True)
    out = []
    for p, prompt, g in zip(pairs, prompts, gens):
        extra = {"steered_steps": g.steered_steps, "gate_steps": g.gate_steps} if gate else {}
        story = Story(prompt_id=p.id, condition=arm.name, prompt=prompt, text=g.text,
                      settings={**want, "n_tokens": g.n_tokens, **extra})
        append_jsonl(path, story)
        out.append(story)
    return out


def with_rate_template(judge, template: str, suffix: str = "coherence"):
    """A copy of an LLM judge that rates with another template (e.g. `coherence.COHERENCE_TEMPLATE`)."""
    if not hasattr(judge, "templates"):
        raise ValueError(f"judge {judge.id!r} has no templates (the probe judge cannot rate coherence); "
                         "use an LLM judge preset")
    out = copy.copy(judge)
    out.templates = dataclasses.replace(judge.templates, rate=(template,))
    out.id = f"{judge.id}-{suffix}"
    return out


def measure(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, stories: dict[str, list[Story]],
            steering_d: Direction, judge_d: Direction, judge, *, coherence_template: str, out: Path,
            template: bool) -> list[dict[str, Any]]:
    """One row per story: length, perplexity, repetition, both probes, the judge's creativity and coherence
    ratings, and (steered arms) the judge's debiased preference over the baseline story of the same prompt."""
    flat = [s for arm in stories.values() for s in arm]
    prompts, texts = [s.prompt for s in flat], [s.text for s in flat]
    ppl = generate.perplexity(model, tokenizer, prompts, texts, template=template)
    own = [p.score for p in Probe(model, tokenizer, steering_d).score(prompts, texts, progress=True)]
    other = [p.score for p in Probe(model, tokenizer, judge_d, tokens=judge_tokens(judge_d)).score(
        prompts, texts, progress=True)]
    rating = _ratings(judge, flat, out / f"ratings-{judge.id}.jsonl")
    coherent = with_rate_template(judge, coherence_template)
    coh = _ratings(coherent, flat, out / f"ratings-{coherent.id}.jsonl")
    base = {s.prompt_id: s for s in stories["baseline"]}
    items = [judges.PairItem(s, base[s.prompt_id]) for s in flat if s.condition != "baseline"]
    stored = {r["key"]: r for r in judges.run(judge, "pairwise", items, out / f"preferences-{judge.id}.jsonl",
                                              progress=True)}
    prefs = {it.a.id: from_dict(Preference, stored[judges.store.pair_key(judge.id, judge.hash_for("pairwise"), it)])
             for it in items}
    rows = []
    for s, p, o, x in zip(flat, ppl, own, other):
        pref = prefs.get(s.id)
        p_win, decision = (pref.p_a, pref.decision) if pref else (None, None)  # debiased in judges.base
        rows.append({"arm": s.condition, "prompt_id": s.prompt_id, "words": len(s.text.split()), "ppl": p,
                     "repetition": coherence.repeated_ngram_rate(s.text), "distinct2": coherence.distinct_n(s.text),
                     "own_probe": o, "probe": x, "rating": rating.get(s.id), "coherence": coh.get(s.id),
                     "p_win": p_win, "decision": decision, "steered_steps": s.settings.get("steered_steps"),
                     "gate_steps": s.settings.get("gate_steps")})
    return rows


def judge_tokens(judge_d: Direction) -> str:
    """What the judging probe reads: response tokens for a direction fitted on them (`stories`, `humans`), so
    the prompt, the same in every arm, cannot weigh in by the response's length; else prompt and response."""
    return "response" if judge_d.meta.get("tokens") == "response" else "input+response"


def _ratings(judge, stories: Sequence[Story], path: Path) -> dict[str, float | None]:
    """story id -> expected 0-9 rating (None when invalid), read by each story's store key (this text)."""
    stored = {r["key"]: from_dict(Rating, r) for r in judges.run(judge, "rating", stories, path, progress=True)}
    ratings = {s.id: stored[judges.store.rating_key(judge.id, judge.hash_for("rating"), s)] for s in stories}
    return {sid: (r.expected if r.status == "ok" else None) for sid, r in ratings.items()}


def run(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair],
        directions: dict[int, Direction], judge_d: Direction, arms: Sequence[Arm], *, layer: int,
        judge=None, out: str | Path = "reports/frontier", norm: str = "relative",
        sampling: generate.Sampling = generate.Sampling(max_new_tokens=96), seed: int = 0,
        coherence_template: str = coherence.COHERENCE_TEMPLATE, ppl_bound: float = frontier_stats.PPL_BOUND,
        rep_bound: float = frontier_stats.REP_BOUND, judge_source: str = "") -> dict[str, Any]:
    """Generate every arm (resumable), measure every story, summarise and recommend; writes stories.jsonl,
    the judgements and table.jsonl (one row per story) under `out` (`report.write_frontier` draws the result)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steering_d = directions[layer]
    similarity = float(torch.nn.functional.cosine_similarity(steering_d.vector.float(), judge_d.vector.float(), 0))
    if judge_d.layer == layer and similarity > 0.999:
        raise ValueError("the judging probe's direction is the steering direction itself; pass --judge-direction "
                         "with another file or another --judge-layer")
    judge = judge or judges.load_judge("self", model, tokenizer)
    stories = {}
    for arm in arms:
        steer = steer_for(arm, directions, layer, norm, seed)
        stories[arm.name] = arm_stories(model, tokenizer, pairs, arm, steer, sampling=sampling, norm=norm,
                                        seed=seed, template=steering_d.template, path=out / "stories.jsonl")
    rows = measure(model, tokenizer, stories, steering_d, judge_d, judge, coherence_template=coherence_template,
                   out=out, template=steering_d.template)
    write_jsonl(out / "table.jsonl", rows)
    result = frontier_stats.summarize(rows, [dataclasses.asdict(a) | {"arm": a.name} for a in arms],
                                      layer=layer, ppl_bound=ppl_bound, rep_bound=rep_bound)
    result["settings"] = {
        "n_prompts": len(pairs), "layer": layer, "norm": norm, "random_seed": seed, "judge": judge.id,
        "judge_probe": {"layer": judge_d.layer, "source": judge_source, "direction_source": judge_d.meta.get("source", ""),
                        "tokens": judge_tokens(judge_d), "cosine_with_steering_direction": similarity},
        "residual_norm": steering_d.resid_norm, **sampling.__dict__,
    }
    return result


def judge_layer(steering_layer: int) -> int:
    """The default judging probe's layer: three blocks before the steering layer, so it is another direction."""
    return max(1, steering_layer - 3)


def demo(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, d: Direction, pairs: Sequence[Pair],
         out: str | Path, *, model_id: str, n: int = 8, max_new_tokens: int = 48,
         judge_direction: str = "auto") -> dict[str, Any]:
    """The demo's small frontier (minutes on 2 cores): `n` prompts, lambda 0.2 and 0.35, the direction vs a random
    one, judged by the model itself and by a probe from another source or layer (`auto`: three layers earlier,
    `judge_layer`; `humans`: the human-calibrated direction). Its figure path is set relative to the report
    folder that holds `out`."""
    judge_d, judge_path = sources.resolve(judge_direction, model, tokenizer, model_id,
                                          judge_layer(d.layer) if judge_direction == "auto" else None)
    result = run(model, tokenizer, pairs[:n], {d.layer: d}, judge_d, plan([0.2, 0.35]), layer=d.layer,
                 judge=judges.load_judge("self", model, tokenizer), out=out, judge_source=judge_path,
                 sampling=generate.Sampling(max_new_tokens=max_new_tokens))
    return {**result, "figure": f"{Path(out).name}/frontier.png"}
