"""One counted-token rule: the same (prompt, story) scores the same through `creative-eval score`, a live
generation trace (left-padded, mixed-length batch) and lm-eval's steered_hf with the creative_probe judge."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from creative_eval import activations, models, probe, steering
from creative_eval import cli
from creative_eval import direction as direction_mod
from creative_eval.records import Story, write_jsonl

PROMPTS = ["Write a poem about a lighthouse keeper who has never seen the sea, and the letters she writes to it.",
           "Describe a kitchen."]
TOL = 1e-5


class Force(LogitsProcessor):
    """Teacher forcing inside `generate`: row r emits forced[r] token by token, then only `stop`."""

    def __init__(self, forced: list[list[int]], start: int, stop: int):
        self.forced, self.start, self.stop = forced, start, stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.start
        out = torch.full_like(scores, -float("inf"))
        for row, ids in enumerate(self.forced):
            out[row, ids[step] if step < len(ids) else self.stop] = 0.0
        return out


@pytest.fixture(scope="module")
def lm_eval_path():
    """steered_hf (probe=true) generating for a mixed-length batch, and the creative_probe judge's ratings."""
    from lm_eval.api.instance import Instance

    from creative_eval.harness import model as steered_model
    from creative_eval.harness import tasks

    lm = steered_model.SteeredHF(probe=True, device="cpu", batch_size=2)
    kwargs = {"until": [], "max_gen_toks": 12, "do_sample": False, "chat": True}
    texts = lm.generate_until([Instance(request_type="generate_until", doc={}, arguments=(p, dict(kwargs)), idx=0)
                               for p in PROMPTS])
    stories = [Story(prompt_id=f"p{i}", condition="induced", prompt=p, text=t)
               for i, (p, t) in enumerate(zip(PROMPTS, texts))]
    judged = tasks._probe_judge({}).rate(stories)
    return lm, stories, [s["probe"] for s in lm.probe_scores], [r.score for r in judged]


def _trace_scores(model, tokenizer, d: direction_mod.Direction, stories: list[Story]) -> list[float]:
    """Score stories while the model 'generates' them (forced tokens, then end of turn), steered."""
    full = activations.encode(tokenizer, [s.prompt for s in stories], [s.text for s in stories])
    gen = activations.encode(tokenizer, [s.prompt for s in stories]).left_padded()
    forced = [full.input_ids[r][full.response_mask[r]].tolist() for r in range(len(stories))]
    for r in range(len(stories)):  # the generation prompt is the full text's prefix, token for token
        prompt_ids = gen.input_ids[r][gen.attention_mask[r].bool()].tolist()
        assert full.input_ids[r][: len(prompt_ids)].tolist() == prompt_ids
    trace = probe.ProbeTrace(d.layer, d.vector)
    stop = tokenizer.eos_token_id
    with torch.inference_mode(), steering.steering(model, steering.Steer.from_direction(d, 0.2, "relative"),
                                                   trace=trace):
        out = model.generate(input_ids=gen.input_ids, attention_mask=gen.attention_mask, do_sample=False,
                             max_new_tokens=max(map(len, forced)) + 1, pad_token_id=tokenizer.pad_token_id,
                             logits_processor=LogitsProcessorList([Force(forced, gen.input_ids.shape[1], stop)]))
    new = out[:, gen.input_ids.shape[1]:]
    assert [new[r][: len(ids)].tolist() for r, ids in enumerate(forced)] == forced
    return [s.score for s in trace.scores(gen.prompt_mask, new, {stop, tokenizer.pad_token_id})]


def test_three_paths_give_the_same_score(lm_eval_path, tmp_path):
    lm, stories, lm_eval_scores, task_scores = lm_eval_path
    assert all(s.text for s in stories) and len({len(s.prompt) for s in stories}) == 2
    write_jsonl(tmp_path / "stories.jsonl", stories)
    _, path = direction_mod.auto(lm.model, lm.tokenizer, models.EMBEDDED)
    assert cli.main(["score", "--input", str(tmp_path / "stories.jsonl"), "--direction", str(path),
                     "--out", str(tmp_path / "scores.jsonl")]) == 0
    cli_scores = [json.loads(line)["probe"] for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    traced = _trace_scores(lm.model, lm.tokenizer, lm.direction, stories)
    for name, got in (("lm-eval probe=true", lm_eval_scores), ("creative_probe judge", task_scores),
                      ("generation trace", traced)):
        assert got == pytest.approx(cli_scores, abs=TOL), name
    assert abs(cli_scores[0] - cli_scores[1]) > 100 * TOL  # the two stories really differ


def test_trace_counts_neither_template_nor_padding(lm_eval_path):
    """Counting every real context token (template tokens too) moves the score by far more than the tolerance."""
    lm, stories, _, _ = lm_eval_path
    batch = activations.encode(lm.tokenizer, [s.prompt for s in stories], [s.text for s in stories])
    states = activations.layer_states(lm.model, batch, [lm.direction.layer])[lm.direction.layer]
    cos = probe.cosines(states, lm.direction.vector)
    ours = probe.masked_scores(cos, probe.counted(batch.prompt_mask, batch.response_mask, "input+response"))
    real = batch.attention_mask.bool().clone()
    real[:, 0] = False
    naive = probe.masked_scores(cos, real)
    assert all(abs(a.score - b.score) > 100 * TOL for a, b in zip(ours, naive))
