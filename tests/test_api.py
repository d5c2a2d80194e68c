"""The Python API: extract, steer, score and load_judge on any HF model, here a tiny random Llama."""

from __future__ import annotations

import torch

import creative_eval as ce
from creative_eval import direction, models
from creative_eval.records import Pair, Story
from creative_eval.steering import Steer, Steering, steering

PAIRS = [Pair(id=f"a{i}", creative=f"A moon that hums lullabies to whales, tale {i}.",
              uncreative=f"A moon report with tide tables, tale {i}.", split="validation") for i in range(4)]


def test_the_api_steers_scores_and_judges_like_the_modules(tiny):
    model, tokenizer = tiny
    d = ce.extract(model, tokenizer, PAIRS, layer=2, model_id="tiny")
    same = direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny")
    assert torch.allclose(d.vector, same.vector) and abs(float(d.vector.norm()) - 1) < 1e-5
    ids = tokenizer("A moon", return_tensors="pt").input_ids
    with torch.no_grad():
        plain = model(ids).logits
        with ce.steer(model, d, alpha=2.0):
            steered = model(ids).logits
        with steering(model, Steer.of(d, Steering(2.0))):
            reference = model(ids).logits
        after = model(ids).logits
    assert not torch.allclose(plain, steered) and torch.allclose(steered, reference) and torch.allclose(plain, after)
    scores = ce.score(model, tokenizer, d, ["A moon"], ["hums"])
    assert len(scores) == 1 and -1 <= scores[0] <= 1
    judge = ce.load_judge("self", model, tokenizer)
    story = Story(prompt_id="a0", condition="baseline", prompt="A moon", text="It hums.")
    assert len(judge.rate([story])) == 1
    assert models.num_layers(model) >= 2


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, creative_eval; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_demo_takes_any_model(monkeypatch, tmp_path, capsys):
    from creative_eval import cli

    seen = []

    def load(name, dtype=None, device_map=None):
        seen.append((name, dtype, device_map))
        raise RuntimeError("stop after the load")

    monkeypatch.setattr(models, "load", load)
    code = cli.main(["demo", "--model", "meta-llama/Meta-Llama-3-8B-Instruct", "--dtype", "bfloat16",
                     "--device-map", "auto", "--n", "2", "--out", str(tmp_path / "d")])
    assert code == 2 and seen == [("meta-llama/Meta-Llama-3-8B-Instruct", "bfloat16", "auto")]
    assert "stop after the load" in capsys.readouterr().err
