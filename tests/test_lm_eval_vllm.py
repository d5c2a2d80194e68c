"""`steered_vllm` through lm-eval's Python API: creative_pairwise on one vLLM engine, the steered stories and the
`steer: false` baselines in the same run; bad model_args refused before vLLM starts. One engine for the file
(`.venv-vllm`, made by `make setup`); a missing vLLM environment fails, it does not skip."""

from __future__ import annotations

import json
import math

import pytest

from creative_eval import models
from creative_eval.backends import vllm
from creative_eval.harness import vllm_model
from creative_eval.steering.generate import Sampling

LIMIT = 4
TOKENS = 24
ARGS = "pretrained=embedded,direction=auto,layer=17,alpha=0.2,norm=relative,max_model_len=1024,max_num_seqs=8"


def test_steered_vllm_is_registered():
    from lm_eval.api.registry import model_registry

    assert model_registry.get("steered_vllm") is vllm_model.SteeredVLLM


@pytest.fixture(scope="module")
def pairwise():
    """`lm_eval.simple_evaluate(model="steered_vllm", tasks=["creative_pairwise"], limit=4)`, greedy, and the model
    it made (its engine stays up for the comparisons below, closed at the end of this file)."""
    import lm_eval

    results = lm_eval.simple_evaluate(model="steered_vllm", model_args=ARGS, tasks=["creative_pairwise"],
                                      limit=LIMIT, gen_kwargs=f"max_gen_toks={TOKENS},do_sample=False",
                                      log_samples=True)
    lm = vllm_model.SteeredVLLM.live
    yield results, lm
    lm.close()


def _judged(results) -> list[dict]:
    return [json.loads(s["filtered_resps"][0]) for s in results["samples"]["creative_pairwise"]]


def test_pairwise_results_and_the_steering_they_record(pairwise):
    results, lm = pairwise
    r = results["results"]["creative_pairwise"]
    for m in ("win_rate", "tie_rate", "consistency", "position_bias"):
        assert math.isfinite(r[f"{m},none"]) and r[f"{m}_ci95_low,none"] <= r[f"{m},none"] <= r[f"{m}_ci95_high,none"]
    recorded = results["config"]["steered_vllm"]
    assert recorded["model"] == "embedded" and recorded["backend"] == "vllm" and recorded["alpha"] == 0.2
    assert recorded["layer"] == 17 and recorded["vllm_layer"] == 16 == lm.steer[0]
    assert recorded["engine"] == {"max_model_len": 1024, "max_num_seqs": 8}
    assert len(_judged(results)) == LIMIT and all(j["status"] == "ok" for j in _judged(results))


def test_baselines_are_the_unsteered_engine_and_the_stories_are_steered(pairwise):
    """The `steer: false` requests ran with the vector cleared: the same greedy tokens as the plain engine; the
    steered ones with it installed: those of the engine steered by hand, and not the baselines."""
    results, lm = pairwise
    judged = _judged(results)
    prompts = [s["doc"]["uncreative"] for s in results["samples"]["creative_pairwise"]]
    greedy = Sampling(max_new_tokens=TOKENS, temperature=0, batch_size=LIMIT)
    plain = [g.text for g in vllm.generate(lm.engine, lm.tokenizer, prompts, sampling=greedy)]
    steered = [g.text for g in vllm.generate(lm.engine, lm.tokenizer, prompts, steer=lm.steer, sampling=greedy)]
    assert [j["baseline"] for j in judged] == plain
    assert [j["story"] for j in judged] == steered
    assert all(s != b for s, b in zip(steered, plain)), list(zip(steered, plain))



def test_two_data_parallel_engines_write_what_one_writes(pairwise):
    """data_parallel_size=2: two runner processes, each steered in its own workers, the requests split between them;
    every steered story and every baseline is the one engine's, token for token."""
    import lm_eval

    one, _ = pairwise
    two = lm_eval.simple_evaluate(model="steered_vllm", model_args=f"{ARGS},data_parallel_size=2",
                                  tasks=["creative_pairwise"], limit=LIMIT,
                                  gen_kwargs=f"max_gen_toks={TOKENS},do_sample=False", log_samples=True)
    lm = vllm_model.SteeredVLLM.live
    try:
        assert len({e.workers[0]["pid"] for e in lm.engines}) == 2  # two engines, each with its own workers
        assert two["config"]["steered_vllm"]["data_parallel_size"] == 2
        assert [(j["story"], j["baseline"]) for j in _judged(two)] == [(j["story"], j["baseline"]) for j in _judged(one)]
    finally:
        lm.close()

@pytest.mark.parametrize("args,message", [
    ({"positions": "generated"}, "positions='generated': vLLM's hook steers every position; use positions=all"),
    ({"data_parallel_size": 0}, "data_parallel_size=0 is not a positive whole number"),
    ({"tensor_parallel_size": 1.5}, "tensor_parallel_size=1.5 is not a whole number"),
    ({"max_lenght": 512}, "unknown model_args ['max_lenght']; steered_vllm takes pretrained"),
    ({"max_length": 512, "max_model_len": 512}, "max_length and max_model_len are the same setting"),
    ({"alpha": "abc"}, "alpha='abc' is not a number"),
    ({"direction": "nope.safetensors"}, "nope.safetensors: no such direction file"),
    ({"direction": "{real}", "layer": 8}, "layer 8 was asked for, but"),
])
def test_bad_model_args_fail_before_vllm_starts(args, message, no_engine, embedded):
    path = None
    if args.get("direction") == "{real}":
        from creative_eval import direction

        _, path = direction.auto(*embedded, models.EMBEDDED)
    args = {k: (str(path) if v == "{real}" else v) for k, v in args.items()}
    with pytest.raises(ValueError, match="steered_vllm model_args: ") as e:
        vllm_model.SteeredVLLM(**args)
    assert message in str(e.value)


def test_unknown_gen_kwargs_and_loglikelihood_say_what_to_use():
    with pytest.raises(ValueError, match=r"gen_kwargs \['top_k'\] are not supported"):
        vllm_model.sampling_of({"top_k": 5}, max_gen_toks=8, seed=0, batch_size=1)
    assert vllm_model.sampling_of({"do_sample": False, "temperature": 0.7}, max_gen_toks=8, seed=0,
                                  batch_size=1).temperature == 0
    assert vllm_model.sampling_of({"do_sample": True}, max_gen_toks=8, seed=0, batch_size=1).temperature == 1.0
    assert vllm_model.sampling_of({}, max_gen_toks=8, seed=0, batch_size=1).temperature == 0  # HFLM's default
    assert vllm_model.cut("one. two. three", [". t", "xyz"]) == "one"
    with pytest.raises(NotImplementedError, match="steered_hf"):
        vllm_model.SteeredVLLM._loglikelihood_tokens(None, [])
