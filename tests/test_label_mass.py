"""Logprob judges record how much of the next-token probability their labels hold; an answer that is mostly
something else is invalid, never a confident score; a server that returns too few top logprobs is refused."""

from __future__ import annotations

import json
import math

import openai
import pytest

from creative_eval.judges import PairItem, base
from creative_eval.judges.openai_backend import JudgeBackendError, OpenAIJudge
from creative_eval.records import Story

A = Story(prompt_id="p", condition="induced", prompt="Write.", text="A moth sings.")
B = Story(prompt_id="p", condition="baseline", prompt="Write.", text="A moth flies.")


class Fixed(base.Judge):
    """A judge whose label probabilities are set by hand, one list per text asked."""

    def __init__(self, answers):
        super().__init__("fixed")
        self.answers = list(answers)

    def _ask(self, texts, labels):
        return [self.answers.pop(0) for _ in texts]


def test_a_rating_keeps_its_mass_and_is_invalid_when_the_digits_hold_almost_nothing():
    confident = [0.0] * 10
    confident[7], confident[8] = 0.15, 0.05  # digits hold 0.2: renormalised, E = 7.25
    ok, = Fixed([(confident, "7")]).rate([A])
    assert ok.status == "ok" and ok.label_mass == pytest.approx(0.2) and ok.expected == pytest.approx(7.25)
    stray = [0.0] * 10
    stray[3] = 0.004  # "The" came back; a digit is a stray 0.4%
    bad, = Fixed([(stray, "The")]).rate([A])
    assert bad.status.startswith("invalid: the labels hold 0.004") and bad.expected is None
    assert bad.label_mass == pytest.approx(0.004) and "'The'" in bad.status


def test_a_preference_is_invalid_when_one_order_is_mostly_something_else():
    good, = Fixed([([0.3, 0.1], "1"), ([0.1, 0.3], "2")]).compare([PairItem(A, B)])
    assert good.status == "ok" and good.decision == "A" and good.label_mass == pytest.approx(0.4)
    bad, = Fixed([([0.3, 0.1], "1"), ([0.001, 0.002], "I")]).compare([PairItem(A, B)])
    assert bad.status.startswith("invalid: the labels hold 0.003") and bad.decision is None


def _completion(top: dict[str, float], content: str) -> str:
    entries = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top.items()]
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [{
        "index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": content},
        "logprobs": {"content": [{"token": content, "logprob": entries[0]["logprob"], "bytes": None,
                                  "top_logprobs": entries}]}}]})


class Raw:
    def __init__(self, body: str):
        self.text = body

    def parse(self):
        return openai.types.chat.ChatCompletion.model_validate_json(self.text)


def _judge(monkeypatch, body: str) -> OpenAIJudge:
    judge = OpenAIJudge("api", "m", base_url="http://127.0.0.1:9/v1", api_key="k", concurrency=1)
    monkeypatch.setattr(judge.client.chat.completions.with_raw_response, "create", lambda **kw: Raw(body))
    return judge


def test_the_bare_label_is_read_before_the_spaced_one(monkeypatch):
    top = {" 7": 0.5, "7": 0.2, "The": 0.1, **{f"x{i}": 0.01 for i in range(9)}}
    rating, = _judge(monkeypatch, _completion(top, " 7")).rate([A])
    assert rating.label_mass == pytest.approx(0.2) and rating.expected == pytest.approx(7.0)


def test_a_server_with_too_few_top_logprobs_is_refused_with_what_to_set(monkeypatch):
    judge = _judge(monkeypatch, _completion({"7": 0.5, "8": 0.2, "The": 0.1}, "7"))
    with pytest.raises(JudgeBackendError, match=r"returned 3 top logprobs.*--max-logprobs 20"):
        judge.rate([A])
