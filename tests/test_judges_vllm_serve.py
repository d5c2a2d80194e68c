"""OpenAIJudge against a real `vllm serve` (the embedded model's de-quantised folder, fp32, on loopback), beside
the HF judge on the same weights and stories: the same label probabilities where the server's top logprobs hold
every label, so the same ratings and the same pairwise decisions. The server comes from `.venv-vllm` (made by
`make setup`); a missing vLLM environment fails, it does not skip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from creative_eval import activations
from creative_eval.backends.llamacpp.server import LocalServer
from creative_eval.judges import base
from creative_eval.judges.hf import HFJudge
from creative_eval.judges.openai_backend import OpenAIJudge
from tests.test_judges_server import stories

pytestmark = pytest.mark.real

TOP = 20  # top logprobs OpenAIJudge asks for: vLLM's default --max-logprobs allows 20


def judge_at(url: str, **kw) -> OpenAIJudge:
    return OpenAIJudge("vllm-serve", "embedded", base_url=url, api_key="unused", concurrency=4, timeout_s=120.0, **kw)


@pytest.fixture(scope="module")
def hf_judge(embedded):
    model, tokenizer = embedded
    return HFJudge("hf", model, tokenizer, batch_size=4)


def _top_floor(model, tokenizer, text: str) -> float:
    """The smallest of the TOP largest next-token probabilities the HF model gives after a judge prompt."""
    ids = activations.encode(tokenizer, [text]).input_ids
    with torch.inference_mode():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    return float(probs.topk(TOP).values[-1])


def test_ratings_from_vllm_serve_are_the_hf_judges_seen_through_the_top_20(vllm_served, hf_judge, embedded):
    """The server's digit probabilities are HF's (fp32, same weights and chat template), except the digits outside
    the 20 top logprobs an API returns, which the judge counts 0; so its ratings are the HF judge's with those
    digits dropped, and differ from the HF judge's full-vocabulary ratings by what the small model puts there."""
    items = stories()
    texts = [hf_judge.templates.rate[0].format(prompt=s.prompt, story=s.text) for s in items]
    ours = [p for p, _ in judge_at(vllm_served)._ask(texts, base.DIGITS)]
    theirs = [p for p, _ in hf_judge._ask(texts, base.DIGITS)]
    floors = [_top_floor(*embedded, t) for t in texts]
    outside = 0
    for got, want, floor in zip(ours, theirs, floors):
        for g, w in zip(got, want):
            assert abs(g - w) < 1e-4 or (g == 0 and w <= floor * (1 + 1e-3)), (g, w, floor)
            outside += g == 0
    seen = [base.rating_from_probs("hf-top-20", s, [([w if g > 0 else 0.0 for g, w in zip(got, want)], None)], "",
                                   0.0) for s, got, want in zip(items, ours, theirs)]
    served_ratings, hf_ratings = judge_at(vllm_served).rate(items), hf_judge.rate(items)
    assert all(r.status == "ok" for r in served_ratings + hf_ratings + seen)
    e_served, e_hf = np.array([r.expected for r in served_ratings]), np.array([r.expected for r in hf_ratings])
    e_seen = np.array([r.expected for r in seen])
    print(f"ratings of {len(items)} stories, vllm serve vs HF (fp32): {outside} of {10 * len(items)} digit "
          f"probabilities outside the top {TOP}; |expected - HF's top-{TOP} expected| <= "
          f"{np.abs(e_served - e_seen).max():.1e}; vs HF's full expected: largest |difference| "
          f"{np.abs(e_served - e_hf).max():.3f}, mean {np.abs(e_served - e_hf).mean():.3f}, Spearman "
          f"{spearmanr(e_served, e_hf).statistic:.3f}, argmax equal {int(sum(a.argmax == b.argmax for a, b in zip(served_ratings, hf_ratings)))}/{len(items)}")
    assert np.abs(e_served - e_seen).max() < 1e-3


def test_pairwise_from_vllm_serve_is_the_hf_judges(vllm_served, hf_judge):
    items = stories()
    pairs = [base.PairItem(items[i], items[i + 1]) for i in range(0, 12, 2)]
    ours, theirs = judge_at(vllm_served).compare(pairs), hf_judge.compare(pairs)
    assert all(p.status == "ok" for p in ours + theirs)
    diff = max(abs(a.p_a - b.p_a) for a, b in zip(ours, theirs))
    print(f"pairwise, {len(pairs)} pairs in both orders: largest |P(A>B) difference| {diff:.2e}; decisions "
          f"{[p.decision for p in ours]} vs HF {[p.decision for p in theirs]}")
    assert diff < 1e-3 and [p.decision for p in ours] == [p.decision for p in theirs]


def test_three_servings_of_one_model_judge_alike_where_their_weights_agree(vllm_served, hf_judge):
    """The same stories rated by vLLM's server (fp32), llama.cpp's server (the Q4 GGUF itself) and HF (fp32, the
    GGUF de-quantised): vLLM and HF read the same numbers, so they agree exactly (above); llama.cpp runs the
    quantised kernels, so its ratings follow theirs in rank but not in value."""
    items = stories()
    with LocalServer(n_ctx=2048, n_threads=2) as srv:
        llama = np.array([r.expected for r in judge_at(srv.base_url).rate(items)])
    by_vllm = np.array([r.expected for r in judge_at(vllm_served).rate(items)])
    hf = np.array([r.expected for r in hf_judge.rate(items)])
    rho_vllm, rho_hf = spearmanr(llama, by_vllm).statistic, spearmanr(llama, hf).statistic
    print(f"ratings of {len(items)} stories: llama.cpp (Q4) vs vllm serve (fp32) Spearman {rho_vllm:.3f}, largest "
          f"|difference| {np.abs(llama - by_vllm).max():.3f}; llama.cpp vs HF (fp32) Spearman {rho_hf:.3f}, "
          f"largest |difference| {np.abs(llama - hf).max():.3f}")
    assert rho_vllm > 0.6 and rho_hf > 0.6  # the Q4 server against fp32 HF measured 0.81 (test_judges_server)
