"""Real checks on the embedded SmolLM2: the layer convention, the attention sink, and that the shipped
direction actually separates creative from negated prompts it was not extracted from."""

from __future__ import annotations

import pytest
import torch

from creative_eval import activations, direction, models, pairs, probe, stats

PROMPTS = [
    "Write a story about a lighthouse keeper who collects storms in jars.",
    "Describe a kitchen.",
    "The minutes of a council meeting where every member is a different weather system.",
]


@pytest.fixture(scope="module")
def default_direction(embedded) -> direction.Direction:
    model, tokenizer = embedded
    return direction.auto(model, tokenizer, models.EMBEDDED)[0]


def test_truncated_forward_equals_full_hidden_states_at_a_mid_layer(embedded):
    model, tokenizer = embedded
    layer = models.num_layers(model) // 2
    batch = activations.encode(tokenizer, PROMPTS)  # padded: rows differ in length
    states = activations.layer_states(model, batch, [layer])[layer]
    with torch.inference_mode():
        full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    real = batch.attention_mask.bool()
    assert (states - full.hidden_states[layer].float())[real].abs().max() <= 1e-5


def test_attention_sink_is_never_pooled(embedded, default_direction):
    model, tokenizer = embedded
    layer = default_direction.layer
    for template in (True, False):
        batch = activations.encode(tokenizer, PROMPTS, ["Once upon a time."] * len(PROMPTS), template=template)
        for name in ("prompt", "response", "input+response"):
            mask = probe.counted(batch.prompt_mask, batch.response_mask, name)
            assert not mask[:, 0].any() and mask.any(1).all(), (template, name)
        states = activations.layer_states(model, batch, [layer])[layer]
        norms = states.norm(dim=-1)
        others = norms[:, 1:][batch.attention_mask[:, 1:].bool()]
        assert (norms[:, 0] > others.max()).all()  # why it is excluded: it dwarfs every content token
        spiked = states.clone()
        spiked[:, 0] = 1e6
        mask = probe.counted(batch.prompt_mask, batch.response_mask, "input+response")
        for how in activations.POOLINGS:
            assert torch.equal(activations.pool(states, mask, how), activations.pool(spiked, mask, how))


def test_shipped_direction_separates_the_test_split(embedded, default_direction):
    model, tokenizer = embedded
    assert default_direction.layer == direction.default_layer(model)
    test = pairs.load_pairs(pairs.SHIPPED, "test")
    scores = probe.Probe(model, tokenizer, default_direction, batch_size=32).score(
        [p.creative for p in test] + [p.uncreative for p in test])
    est = stats.auroc_ci([1] * len(test) + [0] * len(test), [s.score for s in scores],
                         clusters=[p.id for p in test] * 2, n_boot=200, unit="pair")
    assert est.estimate > 0.9, est
