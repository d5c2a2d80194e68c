"""The steered vLLM server (`python -m creative_eval.backends.vllm.server`) against vLLM's plain one and HF: its
greedy chat completions are HF's with the same steer, and differ from the plain server's (which are HF's
unsteered). Bad input is refused in one line before vLLM starts; `--help` imports no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from creative_eval import direction, models
from creative_eval.backends.llamacpp.server import free_port
from creative_eval.backends.vllm import engine as vllm_engine
from creative_eval.steering import generate as hf_generate
from creative_eval.steering.hooks import Steer
from creative_eval.steering.settings import Steering
from tests.conftest import VLLM_SERVE_ARGS, http_server

pytestmark = pytest.mark.real

SERVER = [sys.executable, "-m", "creative_eval.backends.vllm.server"]
ALPHA = 0.5  # relative: large enough that 24 greedy tokens change on the embedded model
PROMPTS = ["Write a story about a lighthouse.", "Write a poem about a broken clock."]
TOKENS = 24


@pytest.fixture(scope="module")
def auto(embedded):
    model, tokenizer = embedded
    return direction.auto(model, tokenizer, models.EMBEDDED)  # cached after its first extraction


@pytest.fixture(scope="module")
def steered(auto):
    """The steered server of the embedded model (fp32, as the HF model), started as a user starts it."""
    port = free_port()
    cmd = [*SERVER, "--direction", str(auto[1]), "--alpha", str(ALPHA), "--port", str(port), *VLLM_SERVE_ARGS]
    with http_server(cmd, dict(os.environ), port) as url:
        yield url


def chat(url: str, prompt: str) -> str:
    body = {"model": "embedded", "messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": TOKENS}
    ask = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(ask, timeout=120) as r:
        return json.loads(r.read())["choices"][0]["message"]["content"]


def test_steered_server_completes_as_hf_steered_and_unlike_the_plain_server(steered, vllm_served, auto, embedded):
    model, tokenizer = embedded
    greedy = hf_generate.Sampling(max_new_tokens=TOKENS, temperature=0.0, batch_size=1)
    steer = Steer.of(auto[0], Steering(alpha=ALPHA))
    for prompt in PROMPTS:
        ours, plain = chat(steered, prompt), chat(vllm_served, prompt)
        [hf] = hf_generate.generate(model, tokenizer, [prompt], steers=[steer], sampling=greedy)
        [hf_plain] = hf_generate.generate(model, tokenizer, [prompt], sampling=greedy)
        print(f"{prompt!r}\n  steered: {ours!r}\n  plain:   {plain!r}")
        assert ours == hf.text and plain == hf_plain.text
        assert ours != plain


@pytest.mark.parametrize("args, says", [
    (["--direction", "/nonexistent/d.safetensors"], "/nonexistent/d.safetensors: no such direction file"),
    (["--direction", "{auto}", "--positions", "prompt"], "--positions prompt"),
])
def test_bad_input_is_refused_in_one_line_before_vllm_starts(args, says, auto):
    env = {**os.environ, vllm_engine.PYTHON_ENV: "/bin/false"}  # were vLLM started, it would exit without a word
    proc = subprocess.run([*SERVER, *(a.format(auto=auto[1]) for a in args)], capture_output=True, text=True,
                          env=env, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and says in lines[0], proc.stderr


def test_help_lists_its_options_without_torch():
    code = """
import sys
from creative_eval.backends.vllm import server
server.main(["--help"])
print(sorted(m for m in ("torch", "transformers", "creative_eval.backends.vllm.engine") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and out.endswith("[]"), proc.stderr
    for option in ("--model", "--direction", "--alpha", "--norm", "--positions"):
        assert option in out, option
    assert "(default: 0.2)" in out and "(default: relative)" in out and "default: None" not in out


def test_a_worker_installs_the_file_at_its_models_first_forward(tiny, tmp_path, monkeypatch):
    """`hook.steer_from_env` waits past modules without decoder blocks, installs on the model, then removes itself."""
    import torch

    from creative_eval.backends.vllm import hook

    model, _ = tiny
    width = model.config.hidden_size
    (tmp_path / "steer.json").write_text(json.dumps({"index": 2, "vector": [1.0] * width}))
    monkeypatch.setenv(hook.STEER_ENV, str(tmp_path / "steer.json"))
    hook.steer_from_env()
    try:
        torch.nn.Linear(2, 2)(torch.zeros(1, 2))  # no blocks: passed over
        with torch.inference_mode():
            model(input_ids=torch.tensor([[1, 2, 3]]))
            model(input_ids=torch.tensor([[1, 2, 3]]))
        state = hook.status(model)
        assert state["index"] == 2 and state["calls"] == 2 and abs(state["norm"] - width ** 0.5) < 1e-4
        assert not torch.nn.modules.module._global_forward_pre_hooks  # the waiting hook is gone
    finally:
        hook.install(model, None, None)
