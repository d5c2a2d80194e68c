"""The llama.cpp backend: GGUF models run by llama-cpp-python, steered with llama.cpp's control vectors.

Why a second backend: a quantised GGUF runs where its HF weights do not fit (an 8B model in 5 GB on a laptop)
and llama.cpp decodes faster on CPUs. The control vector is added to the output of block l at every position
(the `all` positions of `steering`); the layer mapping and file format live in `cvec`.

Weights are loaded without llama.cpp's extra buffer types (see `backends.llamacpp.server`: repacked AMX kernels
crash with SIGILL on CPUs that report AMX but cannot run it).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from creative_eval import direction as direction_mod
from creative_eval import models
from creative_eval.backends.llamacpp import cvec
from creative_eval.direction import Direction
from creative_eval.records import CONDITIONS, Pair, Story
from creative_eval.steering import settings
from creative_eval.steering.generate import Generation, Sampling
from creative_eval.steering.settings import Steering

BACKEND = "llamacpp"


class LlamaCppError(RuntimeError):
    """llama-cpp-python is missing or llama.cpp refused an operation; the message says what to do."""


def _lib() -> tuple[ModuleType, ModuleType]:
    """llama-cpp-python's low-level modules, with llama.cpp's log limited to errors (as Llama(verbose=False))."""
    try:
        import llama_cpp
        from llama_cpp import _internals, _logger
    except ImportError as e:
        raise LlamaCppError(f"the llamacpp backend needs llama-cpp-python ({e}); run "
                            "`pip install 'creative-eval[server]'` (or `make setup`)") from None
    _logger.set_verbose(False)
    return llama_cpp, _internals


def check_steering(setting: Steering) -> None:
    """llama.cpp can only steer every position."""
    if setting.positions != "all":
        raise ValueError(f"--positions {setting.positions}: llama.cpp control vectors act on every position; use "
                         "--positions all with --backend llamacpp, or --backend hf")


def steer_for(direction: Direction, setting: Steering) -> tuple[np.ndarray, int]:
    """(scaled vector, llama.cpp il) for a direction."""
    check_steering(setting)
    num_layers = int(direction.meta.get("num_layers", direction.layer))
    return cvec.scaled_vector(direction, setting), cvec.llamacpp_layer(direction.layer, num_layers)


def cvec_buffer(vector: np.ndarray, il: int) -> np.ndarray:
    """The buffer llama_set_adapter_cvec reads: one n_embd vector per layer starting at il 1, zeros before il."""
    n_embd = vector.shape[0]
    data = np.zeros(n_embd * il, dtype=np.float32)
    data[(il - 1) * n_embd :] = vector
    return data


def set_cvec(ctx: ctypes.c_void_p, vector: np.ndarray | None, il: int = 0) -> None:
    """Apply `vector` at llama.cpp layer il (the range il..il) on a llama_context, or clear it with None."""
    llama_cpp, _ = _lib()
    n_embd = llama_cpp.llama_model_n_embd(llama_cpp.llama_get_model(ctx))
    if vector is None:
        rc = llama_cpp.llama_set_adapter_cvec(ctx, None, 0, n_embd, -1, -1)
    else:
        if vector.shape != (n_embd,):
            raise LlamaCppError(f"control vector has {vector.shape[0]} values, the model's hidden size is {n_embd}")
        data = cvec_buffer(vector, il)
        ptr = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        rc = llama_cpp.llama_set_adapter_cvec(ctx, ptr, data.size, n_embd, il, il)  # llama.cpp copies the data
    if rc != 0:
        raise LlamaCppError(f"llama.cpp refused the control vector (code {rc})")


class Engine:
    """A GGUF model with one llama.cpp context that decodes up to `n_seq` sequences together.

    Each sequence has its own KV stream of `n_ctx_seq` positions (rounded up to llama.cpp's 256); the steering
    is set per call."""

    def __init__(self, path: str | Path, *, n_seq: int = 1, n_ctx_seq: int = 1024, n_threads: int | None = None):
        llama_cpp, internals = _lib()
        n_ctx_seq = -(-n_ctx_seq // 256) * 256  # llama.cpp pads the context to 256 and would split it unevenly
        mparams = llama_cpp.llama_model_default_params()
        mparams.use_extra_bufts = False
        self.model = internals.LlamaModel(path_model=str(path), params=mparams, verbose=False)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_seq_max = n_seq
        cparams.n_ctx = cparams.n_batch = n_seq * n_ctx_seq
        cparams.n_ubatch = min(512, cparams.n_batch)
        cparams.kv_unified = False  # one KV stream per sequence: a unified cache mixed sequences decoded together
        cparams.n_threads = cparams.n_threads_batch = n_threads or max(1, os.cpu_count() or 1)
        self.ctx = internals.LlamaContext(model=self.model, params=cparams, verbose=False)
        self.batch = internals.LlamaBatch(n_tokens=cparams.n_batch, embd=0, n_seq_max=n_seq, verbose=False)
        self.n_seq, self.n_ctx_seq = n_seq, self.ctx.n_ctx() // n_seq
        self.n_vocab = self.model.n_vocab()
        self.n_embd = self.model.n_embd()
        self.n_layer = llama_cpp.llama_model_n_layer(self.model.model)
        self._lib = llama_cpp

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()

    def steer(self, vector: np.ndarray | None, il: int = 0) -> None:
        """Set (or clear, with None) the control vector and drop the KV cache computed under the old one."""
        set_cvec(self.ctx.ctx, vector, il)
        self.ctx.kv_cache_clear()

    # tokens

    def prompt_tokens(self, prompt: str, template: bool = True) -> list[int]:
        """Token ids of a prompt, rendered as `activations.render` does (the GGUF's own chat template)."""
        if not template:
            return self.model.tokenize(prompt.encode(), add_bos=self.model.add_bos_token(), special=True)
        text = self._chat_format(messages=[{"role": "user", "content": prompt}]).prompt
        return self.model.tokenize(text.encode(), add_bos=False, special=True)

    @functools.cached_property
    def _chat_format(self) -> Callable[..., Any]:
        """The GGUF's chat template, rendered as transformers renders it (llama-cpp-python's Jinja2 formatter)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.model.metadata().get("tokenizer.chat_template")
        if template is None:
            raise ValueError("this GGUF has no chat template; use a direction extracted with --no-template")
        return Jinja2ChatFormatter(template, eos_token=self._token_text(self.model.token_eos()),
                                   bos_token=self._token_text(self.model.token_bos()))

    def _token_text(self, token: int) -> str:
        return self.model.token_get_text(token) if token >= 0 else ""

    def text(self, tokens: Sequence[int]) -> str:
        """Decoded text without special tokens (as HF's skip_special_tokens)."""
        return self.model.detokenize(list(tokens), special=False).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.model.vocab, token))

    # decoding

    def _decode(self, rows: Sequence[tuple[int, int, int]]) -> list[int]:
        """Decode (token, position, sequence) rows in one batch; logits are kept for each sequence's last row.
        Returns the batch index of each of those rows, in sequence order of appearance."""
        b = self.batch.batch
        b.n_tokens = len(rows)
        last = {seq: i for i, (_, _, seq) in enumerate(rows)}
        for i, (token, pos, seq) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
            b.seq_id[i][0] = seq
            b.logits[i] = last[seq] == i
        self.ctx.decode(self.batch)
        return list(last.values())

    def logits(self, index: int) -> np.ndarray:
        """A copy of the logits of batch row `index` (llama.cpp reuses its buffer on the next decode)."""
        return np.ctypeslib.as_array(self.ctx.get_logits_ith(index), shape=(self.n_vocab,)).copy()

    def next_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        """log p(next token | tokens) over the vocabulary, from a fresh cache."""
        self.ctx.kv_cache_clear()
        (index,) = self._decode([(t, pos, 0) for pos, t in enumerate(tokens)])
        z = self.logits(index).astype(np.float64)
        return z - (np.log(np.exp(z - z.max()).sum()) + z.max())

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling, seed: int) -> list[list[int]]:
        """New tokens per prompt (end-of-generation token excluded), all prompts decoded together."""
        if len(prompts) > self.n_seq:
            raise ValueError(f"{len(prompts)} prompts but the context holds {self.n_seq} sequences")
        longest = max(len(p) for p in prompts) + sampling.max_new_tokens
        if longest > self.n_ctx_seq:
            raise ValueError(f"a prompt plus {sampling.max_new_tokens} new tokens needs {longest} positions; "
                             f"the context has {self.n_ctx_seq} per sequence")
        self.ctx.kv_cache_clear()
        rng = np.random.default_rng(seed)
        index = dict(enumerate(self._decode([(t, pos, s) for s, p in enumerate(prompts) for pos, t in enumerate(p)])))
        out: list[list[int]] = [[] for _ in prompts]
        for step in range(sampling.max_new_tokens):
            rows = []
            for seq, i in index.items():
                token = pick(self.logits(i), sampling, rng)
                if self.is_eog(token):
                    continue
                out[seq].append(token)
                rows.append((token, len(prompts[seq]) + step, seq))
            if not rows or step == sampling.max_new_tokens - 1:
                break
            index = dict(zip((seq for _, _, seq in rows), self._decode(rows)))
        return out


def pick(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    """Greedy (temperature 0) or temperature + nucleus (top-p) sampling, no top-k, as the HF path samples."""
    if sampling.temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / sampling.temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if sampling.top_p < 1.0:
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), sampling.top_p)) + 1]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(p.shape[0], p=p))


def generate(
    engine: Engine,
    prompts: Sequence[str],
    *,
    steer: tuple[np.ndarray, int] | None = None,
    sampling: Sampling = Sampling(),
    template: bool = True,
) -> list[Generation]:
    """Stories in batches of `sampling.batch_size`, steered when `steer` = (vector, il) is given; batch b is
    seeded with `sampling.seed + b`, like the HF path (the random streams differ between backends)."""
    vector, il = steer if steer is not None else (None, 0)
    engine.steer(vector, il)
    out: list[Generation] = []
    for b, k in enumerate(range(0, len(prompts), sampling.batch_size)):
        tokens = [engine.prompt_tokens(p, template) for p in prompts[k : k + sampling.batch_size]]
        for new in engine.generate(tokens, sampling, sampling.seed + b):
            out.append(Generation(text=engine.text(new), n_tokens=len(new)))
    return out


def open_engine(path: Path, prompts: Sequence[str], sampling: Sampling, n_threads: int | None) -> Engine:
    """An engine sized for the longest prompt (its UTF-8 bytes bound its tokens; 256 for the template) plus the
    new tokens, with one sequence per prompt of a batch."""
    need = max(len(p.encode()) for p in prompts) + 256 + sampling.max_new_tokens
    return Engine(path, n_seq=min(sampling.batch_size, len(prompts)), n_ctx_seq=need, n_threads=n_threads)


def stories(
    model: str,
    pairs: Sequence[Pair],
    direction: Direction,
    *,
    steering: Steering = Steering(),
    conditions: Sequence[str] = CONDITIONS,
    sampling: Sampling = Sampling(),
    direction_file: str = "",
    n_threads: int | None = None,
) -> list[Story]:
    """`generate.stories` through llama.cpp: the control vector is set for `induced` and cleared otherwise."""
    settings.check_conditions(conditions)
    path = cvec.model_gguf(model)
    check_direction(direction, model, direction_file or "direction")
    steer = steer_for(direction, steering)
    engine = open_engine(path, [p.creative for p in pairs] + [p.uncreative for p in pairs], sampling, n_threads)
    out: list[Story] = []
    try:
        for condition in conditions:
            prompts = [settings.prompt_of(p, condition) for p in pairs]
            gens = generate(engine, prompts, steer=steer if settings.is_steered(condition) else None,
                            sampling=sampling, template=direction.template)
            recorded = settings.story_settings(direction, condition, steering, model_id=model,
                                               direction_file=direction_file, **sampling.__dict__, backend=BACKEND,
                                               llamacpp_layer=steer[1])
            out += [Story(prompt_id=p.id, condition=condition, prompt=prompt, text=g.text,
                          settings={**recorded, "n_tokens": g.n_tokens}) for p, prompt, g in zip(pairs, prompts, gens)]
    finally:
        engine.close()
    return out


def is_gguf(model: str) -> bool:
    """A model name this backend runs without transformers: the embedded model or a .gguf file."""
    return model == models.EMBEDDED or model.endswith(".gguf")


def check_direction(d: Direction, model: str, source: str) -> Direction:
    """A loaded direction checked against a GGUF model's hidden size and layer count, without loading the model."""
    cvec.check_shape(d, cvec.gguf_shape(cvec.model_gguf(model)), model, source)
    return d


def server_steering(argv: Sequence[str]) -> list[str]:
    """Take `--direction FILE --alpha A --norm N` out of the server's arguments and, when a direction is given,
    make the server apply it as a control vector to the model it loads (the layer comes from the direction).
    Bad input exits here with a message, before the server starts or any model loads."""
    try:
        return _server_steering(argv)
    except (ValueError, FileNotFoundError, LlamaCppError) as e:
        raise SystemExit(f"local_server: error: {e}") from None


def _server_steering(argv: Sequence[str]) -> list[str]:
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--direction", default=None)
    parser.add_argument("--alpha", type=float, default=settings.DEFAULT_ALPHA)
    parser.add_argument("--norm", default="relative")
    parser.add_argument("--model", default=None)
    ours, rest = parser.parse_known_args(list(argv))
    if ours.direction is None:
        return rest if ours.model is None else ["--model", ours.model, *rest]
    if ours.model is None:
        raise ValueError("--direction needs --model (a .gguf file)")
    d = check_direction(direction_mod.load(ours.direction), ours.model, ours.direction)
    vector, il = steer_for(d, Steering(ours.alpha, ours.norm))
    _lib()
    from llama_cpp.server.model import LlamaProxy

    load = LlamaProxy.load_llama_from_model_settings

    def steered(settings: Any) -> Any:
        llm = load(settings)
        set_cvec(llm.ctx, vector, il)
        return llm

    LlamaProxy.load_llama_from_model_settings = staticmethod(steered)
    return ["--model", ours.model, *rest]
