"""The architecture matrix: every path of the project (block outputs, steering, extraction, the probe, the HF judge
and `steered_hf`) on tiny random models of each decoder family a user may bring, in float32 and bfloat16, so a
family whose blocks, positions or norms differ from Llama's fails here and not on a GPU at 8B."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
import transformers as tf
from torch import nn

from conftest import tiny_tokenizer
from creative_eval import activations, direction, models
from creative_eval.harness.model import SteeredHF
from creative_eval.judges import PairItem
from creative_eval.judges.base import Templates
from creative_eval.judges.hf import HFJudge
from creative_eval.probe import Probe
from creative_eval.records import Pair, Story
from creative_eval.steering import Steer, steering

LAYERS, HIDDEN, HEADS, KV_HEADS = 3, 32, 4, 2
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
EPS = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8}  # unit roundoff: the relative error of one rounding
# label probabilities, ~0.1 each and 0.01 apart here: the bound stays 10x below that spacing. bfloat16 keeps 8
# bits of mantissa, so a padded batch and one unpadded forward round the logits differently by ~1e-3 (seen: 1.1e-4
# in a probability on one CPU's kernels)
JUDGE_TOL = {torch.float32: 1e-6, torch.bfloat16: 1e-3}
TOKENIZER = tiny_tokenizer()

PROMPTS = ["A dog meets a cat.", "The space tanker crashes and spills its cargo. Write a news story."]
RESPONSES = ["Once upon a time a clock argued about the rain.", "The dragon council meets at night."]
PAIRS = [
    Pair(id="a", creative=PROMPTS[1], uncreative="The space tanker delivers its cargo. Write a news story.",
         split="validation"),
    Pair(id="b", creative="A dragon council argues about the rain.", uncreative="A dragon council meets.",
         split="validation"),
    Pair(id="c", creative="Once upon a time a clock argued with a cat.", uncreative="Once upon a time a clock ran.",
         split="validation"),
]
STORIES = [Story(prompt_id="p1", condition="baseline", prompt=PROMPTS[0], text=RESPONSES[0]),
           Story(prompt_id="p1", condition="induced", prompt=PROMPTS[0], text=RESPONSES[0] + " " + RESPONSES[1])]


def _decoder(config_cls: type, model_cls: type, **extra) -> Callable[[dict], nn.Module]:
    """A builder for the Llama-like families: grouped-query attention where the family has it."""
    def build(ids: dict) -> nn.Module:
        return model_cls(config_cls(**ids, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                                    num_hidden_layers=LAYERS, num_attention_heads=HEADS, max_position_embeddings=256,
                                    **extra))
    return build


ARCHS: dict[str, Callable[[dict], nn.Module]] = {
    "llama": _decoder(tf.LlamaConfig, tf.LlamaForCausalLM, num_key_value_heads=KV_HEADS),
    "qwen2": _decoder(tf.Qwen2Config, tf.Qwen2ForCausalLM, num_key_value_heads=KV_HEADS),
    "qwen3": _decoder(tf.Qwen3Config, tf.Qwen3ForCausalLM, num_key_value_heads=KV_HEADS, head_dim=8),
    # small sliding windows, so the windowed layers really cut the prompts here
    "gemma2": _decoder(tf.Gemma2Config, tf.Gemma2ForCausalLM, num_key_value_heads=KV_HEADS, head_dim=8,
                       sliding_window=8),
    "gemma3": _decoder(tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, num_key_value_heads=KV_HEADS, head_dim=8,
                       sliding_window=8),
    "mistral": _decoder(tf.MistralConfig, tf.MistralForCausalLM, num_key_value_heads=KV_HEADS, sliding_window=8),
    "phi3": _decoder(tf.Phi3Config, tf.Phi3ForCausalLM, num_key_value_heads=KV_HEADS),
    "olmo2": _decoder(tf.Olmo2Config, tf.Olmo2ForCausalLM, num_key_value_heads=KV_HEADS),
    "gpt2": lambda ids: tf.GPT2LMHeadModel(tf.GPT2Config(**ids, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                                                         n_positions=256)),
    "gpt_neox": _decoder(tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM),
}
MATRIX = [pytest.param(arch, dtype, id=f"{arch}-{name}") for arch in ARCHS for name, dtype in DTYPES.items()]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on two shared cores, torch's default threads spin against each other and a tiny
    forward takes 100x longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(arch: str, dtype: torch.dtype) -> nn.Module:
    """The tiny random model of `arch`, the same weights for every test (seeded), vocabulary = the tokenizer's."""
    torch.manual_seed(0)
    ids = {"vocab_size": len(TOKENIZER), "pad_token_id": TOKENIZER.pad_token_id,
           "bos_token_id": TOKENIZER.bos_token_id, "eos_token_id": TOKENIZER.eos_token_id}
    return ARCHS[arch](ids).to(dtype).eval()


def unit(dim: int, seed: int = 1) -> torch.Tensor:
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


@torch.inference_mode()
def full(model: nn.Module, batch: activations.Batch) -> tf.modeling_outputs.CausalLMOutputWithPast:
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)


def test_the_matrix_has_grouped_query_attention():
    config = build("llama", torch.float32).config
    assert config.num_key_value_heads < config.num_attention_heads


@pytest.mark.parametrize("arch,dtype", MATRIX)
def test_block_output_is_hf_hidden_state(arch, dtype):
    model = build(arch, dtype)
    assert models.num_layers(model) == LAYERS
    batch = activations.encode(TOKENIZER, PROMPTS)
    ref = full(model, batch).hidden_states
    mask = batch.attention_mask.bool()
    for layer in range(1, LAYERS + 1):
        states = activations.layer_states(model, batch, [layer])[layer]
        assert states.shape == (len(PROMPTS), batch.input_ids.shape[1], HIDDEN)
        diff = (states - ref[layer].float())[mask].abs().max()
        if layer < LAYERS:
            assert diff <= 4 * EPS[dtype] * ref[layer].float()[mask].abs().max()
        else:  # HF's last hidden state is taken after the final norm; layer L is the last block's raw output
            assert diff > 0


@pytest.mark.parametrize("arch,dtype", MATRIX)
def test_steering_adds_the_vector_at_its_block_only_while_open(arch, dtype):
    model = build(arch, dtype)
    batch = activations.encode(TOKENIZER, PROMPTS)
    mask = batch.attention_mask.bool()
    plain = full(model, batch)
    layer, vector = 2, 4.0 * unit(HIDDEN)
    hooks = [len(b._forward_hooks) for b in models.blocks(model)]
    with steering(model, Steer(layer, vector)):
        steered = full(model, batch)
        states = activations.layer_states(model, batch, [layer - 1, layer])
    assert torch.equal(states[layer - 1][mask], plain.hidden_states[layer - 1].float()[mask])  # earlier: untouched
    h = plain.hidden_states[layer].float()[mask]
    # h + v in `dtype`: v rounded once, the sum once, so the error is at most EPS * (|h| + 2|v|)
    error = (states[layer][mask] - h - vector).abs()
    assert (error <= 1.01 * EPS[dtype] * (h.abs() + 2 * vector.abs())).all()
    assert not torch.allclose(steered.logits, plain.logits, atol=1e-3)
    with steering(model, Steer(layer, torch.zeros(HIDDEN))):
        assert torch.equal(full(model, batch).logits, plain.logits)
    assert [len(b._forward_hooks) for b in models.blocks(model)] == hooks
    with pytest.raises(RuntimeError, match="inside"):
        with steering(model, Steer(layer, vector)):
            raise RuntimeError("raised inside the context")
    assert [len(b._forward_hooks) for b in models.blocks(model)] == hooks
    assert torch.equal(full(model, batch).logits, plain.logits)


@pytest.mark.parametrize("arch,dtype", MATRIX)
def test_direction_is_unit_and_probe_is_the_mean_cosine_of_counted_tokens(arch, dtype):
    model = build(arch, dtype)
    d = direction.extract(model, TOKENIZER, PAIRS, 2, model_id=arch)
    assert d.vector.shape == (HIDDEN,) and math.isclose(float(d.vector.norm()), 1.0, rel_tol=1e-5)
    assert d.layer == 2 and d.resid_norm > 0 and d.raw_norm > 0
    scores = Probe(model, TOKENIZER, d).score(PROMPTS, RESPONSES)
    for prompt, response, got in zip(PROMPTS, RESPONSES, scores):
        batch = activations.encode(TOKENIZER, [prompt], [response])  # alone: no padding
        counted = (batch.prompt_mask | batch.response_mask)[0]
        ids = batch.input_ids[0]
        assert TOKENIZER.decode(ids[batch.prompt_mask[0]]) == prompt
        assert TOKENIZER.decode(ids[batch.response_mask[0]]) == response
        h = full(model, batch).hidden_states[2][0].float()[counted]
        cos = (h @ d.vector) / (h.norm(dim=-1) * d.vector.norm())
        assert got.n_tokens == int(counted.sum())
        assert math.isclose(got.score, float(cos.mean()), abs_tol=1e-4)


def _label_probs(model: nn.Module, text: str, labels: list[str]) -> list[float]:
    """P(label) for the next token after the rendered judge text, read by hand from one unpadded forward."""
    rendered = activations.render(TOKENIZER, text, None, template=True)
    ids = torch.tensor([TOKENIZER(rendered, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        p = torch.softmax(model(input_ids=ids).logits[0, -1].float(), -1)
    return [float(p[TOKENIZER.convert_tokens_to_ids(label)]) for label in labels]


@pytest.mark.parametrize("arch,dtype", MATRIX)
def test_hf_judge_rates_and_compares_as_read_by_hand(arch, dtype):
    model = build(arch, dtype)
    # both stories, or both orders, in one padded batch; a random model's labels hold only chance mass (2/vocab)
    judge = HFJudge(arch, model, TOKENIZER, batch_size=4, min_label_mass=0.0)
    templates = Templates()
    digits = [str(k) for k in range(10)]
    tol = JUDGE_TOL[dtype]
    for story, rating in zip(STORIES, judge.rate(STORIES)):
        p = _label_probs(model, templates.rate[0].format(prompt=story.prompt, story=story.text), digits)
        assert rating.status == "ok"
        assert rating.probs == pytest.approx([q / sum(p) for q in p], abs=tol)
        assert rating.expected == pytest.approx(sum(k * q for k, q in enumerate(p)) / sum(p), abs=10 * tol)
    (pref,) = judge.compare([PairItem(*STORIES)])
    a, b = STORIES

    def p_first(first: Story, second: Story) -> float:
        one, two = _label_probs(model, templates.compare[0].format(prompt=a.prompt, first=first.text,
                                                                   second=second.text), ["1", "2"])
        return one / (one + two)

    assert pref.status == "ok" and pref.decision in ("A", "B", "tie")
    assert pref.p_first_ab == pytest.approx(p_first(a, b), abs=tol)
    assert pref.p_first_ba == pytest.approx(p_first(b, a), abs=tol)


@pytest.mark.parametrize("arch,dtype", MATRIX)
def test_steered_hf_generates_steered_and_plain(arch, dtype, tmp_path: Path):
    from lm_eval.api.instance import Instance

    model = build(arch, dtype)
    model.save_pretrained(tmp_path)
    TOKENIZER.save_pretrained(tmp_path)
    path = direction.save(direction.extract(model, TOKENIZER, PAIRS, 2, model_id=arch), tmp_path / "d.safetensors")
    lm = SteeredHF(pretrained=str(tmp_path), direction=str(path), alpha=4.0, device="cpu", batch_size=2,
                   dtype=str(dtype).removeprefix("torch."))
    assert lm.model.dtype == dtype and type(lm.model) is type(model)

    def generate(steer: bool) -> list[str]:
        kwargs = {"until": [], "max_gen_toks": 8, "do_sample": False, "steer": steer}
        return lm.generate_until([Instance(request_type="generate_until", doc={}, arguments=(p, dict(kwargs)), idx=0)
                                  for p in PROMPTS], disable_tqdm=True)

    steered, plain = generate(True), generate(False)
    assert len(steered) == len(plain) == len(PROMPTS) and all(isinstance(t, str) for t in steered + plain)
    assert steered != plain
    assert generate(False) == plain  # nothing of the steered run is left behind
    assert all(not b._forward_hooks for b in models.blocks(lm.model))
