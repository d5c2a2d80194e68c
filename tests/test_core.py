"""Core invariants on a tiny random Llama: truncation, steering positions, caching, padding, files."""

from __future__ import annotations

import math

import pytest
import torch

from creative_eval import activations, direction, models, probe, steering
from creative_eval.records import Pair

PROMPTS = [
    "The space tanker crashes and spills its cargo. Write a news story.",
    "A dog meets a cat.",
    "Once upon a time a clock argued about the rain in the city at night, and nobody listened.",
]
PAIRS = [
    Pair(id="a", creative=PROMPTS[0], uncreative="The space tanker delivers its cargo without incident. Write a news story.", split="validation"),
    Pair(id="b", creative="A dragon council argues about the rain.", uncreative="A dragon council meets and approves the minutes.", split="validation"),
    Pair(id="c", creative=PROMPTS[2], uncreative="Once upon a time a clock showed the time in the city at night.", split="validation"),
]


def unit(dim: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=g)
    return v / v.norm()


def make_direction(model, tokenizer, layer: int = 2) -> direction.Direction:
    return direction.extract(model, tokenizer, PAIRS, layer, model_id="tiny")


@pytest.mark.parametrize("layer", [1, 2, 4])
def test_truncated_forward_matches_full_hidden_states(tiny, layer):
    model, tokenizer = tiny
    batch = activations.encode(tokenizer, PROMPTS)
    states = activations.layer_states(model, batch, [layer])[layer]
    with torch.no_grad():
        full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    reference = full.hidden_states[layer] if layer < models.num_layers(model) else None
    if reference is None:  # HF's last hidden state is after the final norm: compare before it
        reference = states
        assert not torch.allclose(full.hidden_states[layer], states)
    mask = batch.attention_mask.bool()
    assert (states - reference)[mask].abs().max() <= 1e-5


def test_truncated_forward_skips_later_blocks(tiny):
    model, tokenizer = tiny
    calls = []
    handle = models.block(model, 4).register_forward_hook(lambda *a: calls.append(1))
    try:
        activations.layer_states(model, activations.encode(tokenizer, PROMPTS[:1]), [2])
    finally:
        handle.remove()
    assert calls == []


def test_masks_cover_only_content_tokens(tiny):
    _, tokenizer = tiny
    batch = activations.encode(tokenizer, ["A dog meets a cat."], ["Once upon a time"])
    ids = batch.input_ids[0]
    assert tokenizer.decode(ids[batch.prompt_mask[0]]) == "A dog meets a cat."
    assert tokenizer.decode(ids[batch.response_mask[0]]) == "Once upon a time"


def test_padding_does_not_change_directions_or_scores(tiny):
    model, tokenizer = tiny
    d_batched = direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny", batch_size=8)
    d_single = direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny", batch_size=1)
    assert torch.allclose(d_batched.vector, d_single.vector, atol=1e-5)
    p = probe.Probe(model, tokenizer, d_batched, batch_size=8)
    together = p.score(PROMPTS, ["x", "a much longer response about the rain in the city", "y"])
    p.batch_size = 1
    alone = p.score(PROMPTS, ["x", "a much longer response about the rain in the city", "y"])
    for a, b in zip(together, alone):
        assert a.n_tokens == b.n_tokens > 0
        assert math.isclose(a.score, b.score, abs_tol=1e-5)


def test_last_token_pooling_differs_from_mean(tiny):
    model, tokenizer = tiny
    mean = direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny", pooling="mean")
    last = direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny", pooling="last")
    assert last.meta["pooling"] == "last"
    assert not torch.allclose(mean.vector, last.vector)
    assert math.isclose(float(mean.vector.norm()), 1.0, rel_tol=1e-5)


def test_alpha_zero_gives_identical_logits(tiny):
    model, tokenizer = tiny
    batch = activations.encode(tokenizer, PROMPTS)
    with torch.no_grad():
        plain = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        with steering.steering(model, steering.Steer(2, unit(64) * 0.0)):
            steered = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        with steering.steering(model, steering.Steer(2, unit(64) * 8.0)):
            changed = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert torch.equal(plain, steered)
    assert not torch.allclose(plain, changed)


def _generate(model, tokenizer, steers, use_cache=True, scores=False):
    batch = activations.encode(tokenizer, PROMPTS[:2]).left_padded()
    with torch.no_grad(), steering.steering(model, steers):
        return model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=6,
                              do_sample=False, use_cache=use_cache, pad_token_id=tokenizer.pad_token_id,
                              output_logits=scores, return_dict_in_generate=scores)


def test_generated_positions_leave_prefill_untouched_and_change_decode_steps(tiny):
    model, tokenizer = tiny
    plain = _generate(model, tokenizer, [], scores=True)
    steered = _generate(model, tokenizer, [steering.Steer(2, unit(64) * 20.0, "generated")], scores=True)
    assert torch.equal(plain.logits[0], steered.logits[0])  # first new token comes from the prefill
    assert any(not torch.allclose(a, b) for a, b in zip(plain.logits[1:], steered.logits[1:]))


def test_prompt_positions_change_prefill_only(tiny):
    model, tokenizer = tiny
    plain = _generate(model, tokenizer, [], scores=True)
    steered = _generate(model, tokenizer, [steering.Steer(2, unit(64) * 20.0, "prompt")], scores=True)
    assert not torch.allclose(plain.logits[0], steered.logits[0])


@pytest.mark.parametrize("positions", steering.POSITIONS)
def test_greedy_steered_generation_same_with_and_without_cache(tiny, positions):
    model, tokenizer = tiny
    steer = [steering.Steer(2, unit(64) * 20.0, positions)]
    assert torch.equal(_generate(model, tokenizer, steer, True), _generate(model, tokenizer, steer, False))


def test_several_steers_at_once_and_hooks_removed_on_error(tiny):
    model, tokenizer = tiny
    steers = [steering.Steer(1, unit(64, 1) * 5.0), steering.Steer(3, unit(64, 2) * 5.0)]
    before = [dict(b._forward_hooks) for b in models.blocks(model)]
    with pytest.raises(RuntimeError, match="boom"):
        with steering.steering(model, steers):
            assert len(models.block(model, 1)._forward_hooks) == len(before[0]) + 1
            raise RuntimeError("boom")
    assert [dict(b._forward_hooks) for b in models.blocks(model)] == before


def test_norm_modes_scale_the_vector(tiny):
    model, tokenizer = tiny
    d = make_direction(model, tokenizer)
    assert math.isclose(float(steering.Steer.from_direction(d, 3.0).vector.norm()), 3.0, rel_tol=1e-5)
    assert math.isclose(float(steering.Steer.from_direction(d, 2.0, "raw").vector.norm()), 2 * d.raw_norm, rel_tol=1e-4)
    assert math.isclose(float(steering.Steer.from_direction(d, 0.5, "relative").vector.norm()), 0.5 * d.resid_norm,
                        rel_tol=1e-4)


@pytest.mark.parametrize("alpha,norm,positions,match", [
    (float("nan"), "unit", "all", "finite"), (float("inf"), "unit", "all", "finite"),
    (1.0, "huge", "all", "norm"), (1.0, "unit", "everywhere", "positions"),
])
def test_bad_steering_settings_fail_early(alpha, norm, positions, match):
    with pytest.raises(ValueError, match=match):
        steering.check(alpha, norm, positions)


@pytest.mark.parametrize("layer", [0, 5, -1, 2.5])
def test_layer_out_of_range(tiny, layer):
    model, _ = tiny
    with pytest.raises(ValueError, match="out of range"):
        models.check_layer(model, layer)


def test_direction_file_round_trip_and_mismatch_refused(tiny, tmp_path):
    from tests.conftest import tiny_llama

    model, tokenizer = tiny
    d = make_direction(model, tokenizer)
    path = direction.save(d, tmp_path / "d.safetensors")
    back = direction.load(path, model)
    assert torch.equal(back.vector, d.vector) and back.meta == d.meta
    assert path.read_bytes()[8:9] == b"{"  # safetensors header, not a pickle
    other = tiny_llama(layers=6, vocab=len(tokenizer))
    with pytest.raises(direction.DirectionMismatchError, match="does not fit"):
        direction.load(path, other)


def test_probe_trace_reads_before_injection(tiny):
    model, tokenizer = tiny
    d = make_direction(model, tokenizer)
    batch = activations.encode(tokenizer, PROMPTS[:1])
    traces = []
    for alpha in (0.0, 50.0):
        trace = probe.ProbeTrace(d.layer, d.vector)
        with torch.no_grad(), steering.steering(model, steering.Steer.from_direction(d, alpha), trace=trace):
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        traces.append(trace.cosines())
    assert torch.allclose(traces[0], traces[1])
    expected = probe.Probe(model, tokenizer, d, tokens="prompt").score(PROMPTS[:1])[0]
    assert math.isclose(float(traces[0][0][batch.prompt_mask[0]].mean()), expected.score, abs_tol=1e-5)
