"""The vLLM backend: the hook in a freshly started worker, the layer index measured against HF steering, greedy
parity with HF, `generate --backend vllm` (records, resume, refusals). One engine (`.venv-vllm`, made by
`make setup`) is started for the file and shared; a missing vLLM environment fails, it does not skip."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from creative_eval import activations, cli, direction, models, pairs, steering
from creative_eval.backends import vllm
from creative_eval.backends.vllm import engine as vllm_engine
from creative_eval.backends.vllm import hook
from creative_eval.records import CONDITIONS, Story, read_records
from creative_eval.steering import generate
from creative_eval.steering.generate import Sampling
from creative_eval.steering.settings import Steering

ALPHA = 0.5  # relative norm, as the llama.cpp mapping test
PROMPTS = ["Write a short story about a lighthouse keeper.", "Describe a kitchen.",
           "Tell me about a dragon who runs a bakery."]
GREEDY_TOKENS = 32


# --- the hook on a stand-in model (no vLLM) -----------------------------------------------------------------------


class Layer(nn.Module):
    """Returns (hidden_states, residual) as vLLM's Llama decoder layer does."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, h):
        return h * 1.0, torch.zeros_like(h)


class PPMissingLayer(nn.Identity):
    """Named as vLLM names a block another pipeline stage holds."""


def test_hook_adds_to_the_first_output_and_replaces_itself():
    model = nn.Module()
    model.model = nn.Module()
    model.model.layers = nn.ModuleList([Layer(), Layer(), PPMissingLayer()])
    x = torch.zeros(5, 4)
    state = hook.install(model, 1, [1.0, 2.0, 3.0, 4.0])
    assert state["index"] == 1 and state["norm"] == pytest.approx(30 ** 0.5)
    out, residual = model.model.layers[1](x)
    assert torch.equal(out, torch.tensor([1.0, 2.0, 3.0, 4.0]).expand(5, 4)) and not residual.any()
    hook.install(model, 1, [0.0, 0.0, 0.0, 1.0])  # replaces, never stacks
    assert model.model.layers[1](x)[0].sum() == 5
    assert hook.status(model)["calls"] == 1 and hook.status(model)["tokens"] == 5
    assert hook.install(model, 2, [1.0] * 4)["index"] is None  # another stage holds block 2: nothing added
    assert hook.install(model, None, None)["index"] is None
    assert not model.model.layers[1](x)[0].any()
    with pytest.raises(ValueError, match="out of range"):
        hook.install(model, 3, [1.0] * 4)


def test_layer_l_is_vllm_index_l_minus_1():
    assert vllm.vllm_layer(17, 30) == 16 and vllm.vllm_layer(1, 30) == 0 and vllm.vllm_layer(30, 30) == 29
    for layer in (0, 31):
        with pytest.raises(ValueError, match=r"layers 1\.\.30"):
            vllm.vllm_layer(layer, 30)


def test_a_missing_vllm_environment_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setenv(vllm.PYTHON_ENV, str(tmp_path / "absent" / "python"))
    before = set(Path(vllm_engine.tempfile.gettempdir()).glob("creative-eval-vllm-*"))
    with pytest.raises(vllm.VLLMError, match=r"own environment: .*absent/python is missing; run `make setup`"):
        vllm.Engine("embedded")
    assert set(Path(vllm_engine.tempfile.gettempdir()).glob("creative-eval-vllm-*")) == before


# --- one engine for the session -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def auto_direction(embedded):
    model, tokenizer = embedded
    return direction.auto(model, tokenizer, models.EMBEDDED)


@pytest.fixture(scope="module")
def engine():
    """The embedded model in vLLM (fp32, eager), started once for this file (closed before test_vllm_parallel's
    engine starts)."""
    eng = vllm.Engine(vllm.source_of(models.EMBEDDED), max_model_len=1024, max_num_seqs=8)
    yield eng
    eng.close()


def _rows(tokenizer, prompts):
    batch = activations.encode(tokenizer, prompts)
    return [batch.input_ids[i][batch.attention_mask[i].bool()].tolist() for i in range(len(prompts))]


def test_hook_reaches_a_freshly_started_worker(engine, auto_direction, embedded):
    """The vector is installed in vLLM's own worker process (spawned by vLLM, neither this process nor the runner),
    it runs there on every forward, and clearing it (with the prefix cache) restores the plain model exactly."""
    _, tokenizer = embedded
    d, _ = auto_direction
    (worker,) = engine.info["workers"]
    assert worker["pid"] not in (os.getpid(), engine.info["pid"]) and worker["index"] is None
    sampling = Sampling(max_new_tokens=8, temperature=0, batch_size=3)
    plain = vllm.generate(engine, tokenizer, PROMPTS, sampling=sampling)
    index, vector = vllm.steer_for(d, Steering(ALPHA))
    steered = vllm.generate(engine, tokenizer, PROMPTS, steer=(index, vector), sampling=sampling)
    (state,) = engine.status()
    assert state["pid"] == worker["pid"] and state["index"] == index == d.layer - 1
    assert state["norm"] == pytest.approx(ALPHA * d.resid_norm, rel=1e-4) and state["calls"] >= 8
    assert [g.text for g in steered] != [g.text for g in plain]
    again = vllm.generate(engine, tokenizer, PROMPTS, sampling=sampling)
    assert engine.status()[0]["index"] is None
    assert [g.text for g in again] == [g.text for g in plain]


@pytest.fixture(scope="module")
def mapping(engine, auto_direction, embedded) -> dict[int, float]:
    """Pearson r, per vLLM block index, between the next-token log-prob shift that the same vector causes in HF
    (at layer l) and in vLLM (at index i), over the whole vocabulary at the last position of 3 chat prompts."""
    model, tokenizer = embedded
    d, _ = auto_direction
    index, vector = vllm.steer_for(d, Steering(ALPHA))
    rows = _rows(tokenizer, PROMPTS)

    def hf(steers):
        with torch.inference_mode(), steering.steering(model, steers):
            return np.concatenate([torch.log_softmax(model(input_ids=torch.tensor([r])).logits[0, -1].double(),
                                                     -1).numpy() for r in rows])

    hf_shift = hf([steering.Steer.of(d, Steering(ALPHA))]) - hf([])
    engine.steer(None)
    plain = engine.next_logprobs(rows).ravel()
    result = {}
    for i in (index - 1, index, index + 1):
        engine.steer((i, vector))
        result[i] = float(np.corrcoef(engine.next_logprobs(rows).ravel() - plain, hf_shift)[0, 1])
    engine.steer(None)
    print(f"layer {d.layer}: Pearson of the log-prob shift, vLLM index -> r: {result}")
    return result


def test_layer_mapping_is_measured_not_assumed(mapping, auto_direction):
    """Our layer l is the output of block l counted from 1 (HF hidden_states[l]); vLLM's `model.model.layers` count
    from 0. The shift HF's steering causes at l must match vLLM's at index l - 1 (r >= 0.95; both fp32, so it is
    nearly 1) and clearly less at the neighbours."""
    index = auto_direction[0].layer - 1
    assert max(mapping, key=mapping.get) == index
    assert mapping[index] >= 0.95
    assert max(mapping[index - 1], mapping[index + 1]) <= mapping[index] - 0.1


def test_greedy_text_equals_hf(engine, auto_direction, embedded):
    """fp32 on both sides: the same tokens in, the same greedy tokens out, unsteered and steered (HF one prompt at
    a time, unpadded; vLLM's requests never see each other)."""
    model, tokenizer = embedded
    d, _ = auto_direction
    sampling = Sampling(max_new_tokens=GREEDY_TOKENS, temperature=0, batch_size=1)
    for steer_hf, steer_vllm in (([], None), ([steering.Steer.of(d, Steering(0.2))], vllm.steer_for(d, Steering()))):
        ours = vllm.generate(engine, tokenizer, PROMPTS, steer=steer_vllm, sampling=replace(sampling, batch_size=3))
        theirs = generate.generate(model, tokenizer, PROMPTS, steers=steer_hf, sampling=sampling)
        assert [g.n_tokens for g in ours] == [g.n_tokens for g in theirs] == [GREEDY_TOKENS] * 3
        assert [g.text for g in ours] == [g.text for g in theirs]


def test_sampling_is_seeded_per_story(engine, embedded):
    """Each story has its own seed (`request_seed`): the same seed gives the same stories in any batch size."""
    _, tokenizer = embedded
    s = Sampling(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=3, batch_size=3)
    first = [g.text for g in vllm.generate(engine, tokenizer, PROMPTS, sampling=s)]
    one_by_one = [g.text for g in vllm.generate(engine, tokenizer, PROMPTS, sampling=replace(s, batch_size=1))]
    other = [g.text for g in vllm.generate(engine, tokenizer, PROMPTS, sampling=replace(s, seed=4))]
    assert first == one_by_one != other


# --- the command --------------------------------------------------------------------------------------------------


@pytest.fixture
def shared_engine(engine, monkeypatch):
    """`generate --backend vllm` runs on the session's engine; the arguments it would start one with are kept."""
    started = []

    class Shared:
        def __init__(self, model, **kwargs):
            started.append((model, kwargs))

        def __enter__(self):
            return engine

        def __exit__(self, *_):
            engine.steer(None)

    monkeypatch.setattr(vllm_engine, "Engine", Shared)
    return started


def _generate(out: Path, path: str, *extra: str) -> int:
    return cli.main(["generate", "--backend", "vllm", "--direction", path, "--alpha", str(ALPHA), "--limit", "2",
                     "--max-new-tokens", "12", "--temperature", "0", "--batch-size", "2", "--out", str(out), *extra])


def test_generate_command_vllm_backend_records_and_resumes(shared_engine, engine, auto_direction, embedded, tmp_path):
    """Three conditions through vLLM: induced steered, baseline and creative (after induced) not; the HF backend's
    settings plus `backend: vllm`; a re-run keeps the file, and one cut short finishes it as an uninterrupted run."""
    _, tokenizer = embedded
    d, path = auto_direction
    out = tmp_path / "stories.jsonl"
    assert _generate(out, str(path), "--tensor-parallel-size", "1") == 0
    (model, kwargs), = shared_engine
    assert model == vllm.source_of(models.EMBEDDED) and kwargs["max_num_seqs"] == 2
    assert kwargs["tensor_parallel_size"] == 1 and kwargs["max_model_len"] >= 12
    stories = read_records(out, Story)
    assert [s.condition for s in stories] == [c for c in CONDITIONS for _ in range(2)]
    for s in stories:
        assert s.settings["backend"] == "vllm" and s.settings["vllm_layer"] == d.layer - 1
        assert s.settings["alpha"] == (ALPHA if s.condition == "induced" else 0.0)
        assert s.settings["layer"] == d.layer and s.settings["n_tokens"] == 12
    plain = vllm.generate(engine, tokenizer, [s.prompt for s in stories if s.condition != "induced"],
                          sampling=Sampling(max_new_tokens=12, temperature=0))
    assert [g.text for g in plain] == [s.text for s in stories if s.condition != "induced"]
    by = {(s.prompt_id, s.condition): s.text for s in stories}
    assert all(by[(pid, "induced")] != by[(pid, "baseline")] for pid, _ in by)
    whole = out.read_bytes()
    assert _generate(out, str(path)) == 0 and out.read_bytes() == whole  # nothing remade
    out.write_bytes(b"".join(whole.splitlines(keepends=True)[:3]))  # killed after the first batches
    assert _generate(out, str(path)) == 0 and out.read_bytes() == whole


@pytest.mark.parametrize("argv,message", [
    (["generate", "--backend", "vllm", "--positions", "generated", "--out", "s.jsonl"],
     "--positions generated: the vLLM backend steers every position"),
    (["generate", "--backend", "vllm", "--device-map", "auto", "--out", "s.jsonl"],
     "--device-map applies to --backend hf"),
    (["generate", "--tensor-parallel-size", "2", "--out", "s.jsonl"],
     "--tensor-parallel-size apply to --backend vllm"),
    (["generate", "--backend", "llamacpp", "--pipeline-parallel-size", "2", "--out", "s.jsonl"],
     "--pipeline-parallel-size apply to --backend vllm"),
    (["generate", "--backend", "vllm", "--direction", "{tiny}", "--out", "s.jsonl"],
     "does not fit this model (config_fingerprint"),
    (["generate", "--backend", "vllm", "--direction", "{real}", "--out", "hf.jsonl"],
     "hf.jsonl: story p003:baseline was made with other settings (backend None there vs 'vllm' now)"),
])
def test_bad_vllm_arguments_fail_before_vllm_starts(argv, message, no_engine, auto_direction, tmp_path, monkeypatch,
                                                   capsys):
    monkeypatch.chdir(tmp_path)
    tiny = direction.Direction(torch.ones(64) / 8, {"model_id": "tiny", "layer": "2", "hidden_size": "64",
                                                    "num_layers": "4", "config_fingerprint": "0" * 16,
                                                    "raw_norm": "2.0", "resid_norm": "10.0"})
    files = {"tiny": str(direction.save(tiny, tmp_path / "tiny.safetensors")), "real": str(auto_direction[1])}
    hf_settings = {"model": "embedded", **Steering().record("baseline"), **Sampling().__dict__}  # as HF records
    first = pairs.load_pairs(pairs.SHIPPED, "test")[0].uncreative
    (tmp_path / "hf.jsonl").write_text(json.dumps({"prompt_id": "p003", "condition": "baseline", "prompt": first,
                                                   "text": "t", "settings": hf_settings}) + "\n")
    argv = [x.format(**files) for x in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "creative-eval generate: error:" in err and message in err, err
