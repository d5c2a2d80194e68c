"""The process that owns a vLLM engine, run in vLLM's own environment (`.venv-vllm`), driven by `engine.Engine`.

    <vllm python> -m creative_eval.backends.vllm.runner '<engine arguments as JSON>'

It answers one JSON line on its standard output for each JSON line read on its standard input; everything else
that vLLM or its workers print goes to standard error. Requests (`op`): `steer` (install or clear the vector in
every worker, `hook.SteeringExtension`), `status` (each worker's state), `generate` (token ids in, token ids
out), `logprobs` (next-token log-probabilities over the whole vocabulary), `timing` (the workers' forward
timers on or off), `profile` (torch's profiler in the workers on, or off with its op table), `close`. A reply is
`{"ok": ...}` or `{"error": "..."}`. Token ids only cross: the project's tokenizer renders and decodes, so both
backends read and write the same tokens. This module imports nothing of the project but `hook` (by name).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

EXTENSION = "creative_eval.backends.vllm.hook.SteeringExtension"
STEER_ENV = "CREATIVE_EVAL_VLLM_STEER"  # a JSON file {"index": i, "vector": [...]} that every worker installs (hook)
OPS = ("steer", "status", "generate", "logprobs", "timing", "profile")


def engine(spec: dict[str, Any]):
    """`vllm.LLM` with the steering extension in every worker. Eager mode: the steering is a forward hook, which
    a compiled graph or a captured CUDA graph would not run."""
    import torch
    from vllm import LLM

    kwargs = {k: v for k, v in spec.get("engine", {}).items() if v is not None}
    kwargs.setdefault("dtype", "auto" if torch.cuda.is_available() else "float32")
    return LLM(model=spec["model"], worker_extension_cls=EXTENSION, enforce_eager=True, skip_tokenizer_init=True,
               max_logprobs=-1, seed=0, **kwargs)


class Runner:
    def __init__(self, llm: Any):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.llm, self.SamplingParams, self.TokensPrompt = llm, SamplingParams, TokensPrompt
        self.steering: tuple[int, Any] | None = None

    def steer(self, index: int | None, vector: list[float] | None = None) -> list[dict[str, Any]]:
        """Every worker's hook replaced, then the prefix cache dropped: blocks computed under the old steering
        must not be reused."""
        workers = self.llm.collective_rpc("creative_eval_steer", args=(index, vector))
        if index is not None and not any(w["index"] == index for w in workers):
            raise RuntimeError(f"no worker holds block {index}: {workers}")
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM did not reset its prefix cache after the steering changed")
        return workers

    def status(self) -> list[dict[str, Any]]:
        return self.llm.collective_rpc("creative_eval_status")

    def timing(self, on: bool) -> list[dict[str, Any]]:
        return self.llm.collective_rpc("creative_eval_timing", args=(on,))

    def profile(self, on: bool) -> list[dict[str, Any] | None]:
        return self.llm.collective_rpc("creative_eval_profile", args=(on,))

    def generate(self, prompts: list[list[int]], *, max_tokens: int, temperature: float, top_p: float,
                 seeds: list[int], stop: list[int]) -> list[list[int]]:
        params = [self.SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=0,
                                      seed=seed, stop_token_ids=stop, detokenize=False) for seed in seeds]
        outs = self.llm.generate([self.TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    def logprobs(self, prompts: list[list[int]]) -> list[list[float]]:
        """log p(next token | prompt) over the whole vocabulary, one prompt at a time, read from the logits the
        workers keep (`hook.capture`) under the current steering."""
        self.llm.collective_rpc("creative_eval_capture", args=(True,))
        try:
            rows = []
            for p in prompts:
                self.generate([p], max_tokens=1, temperature=0.0, top_p=1.0, seeds=[0], stop=[])
                kept = [r for r in self.llm.collective_rpc("creative_eval_captured") if r is not None]
                rows.append(kept[0][-1])
            return rows
        finally:
            self.llm.collective_rpc("creative_eval_capture", args=(False,))


def serve(runner: Runner, requests, replies) -> None:
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            op = request.pop("op")
            if op == "close":
                _reply(replies, {"ok": True})
                return
            if op not in OPS:
                raise ValueError(f"unknown op {op!r}; one of {OPS}")
            _reply(replies, {"ok": getattr(runner, op)(**request)})
        except Exception as e:  # the client raises it with this message
            traceback.print_exc(file=sys.stderr)
            _reply(replies, {"error": f"{type(e).__name__}: {e}"})


def _reply(replies, obj: dict[str, Any]) -> None:
    replies.write(json.dumps(obj) + "\n")
    replies.flush()


def main(argv: list[str]) -> int:
    replies = os.fdopen(os.dup(1), "w")  # the protocol keeps the real stdout ...
    os.dup2(2, 1)  # ... and whatever else prints to it (vLLM, its workers) goes to stderr
    spec = json.loads(argv[0])
    try:
        llm = engine(spec)
        runner = Runner(llm)
        info = {"pid": os.getpid(), "workers": runner.status(), "vllm": __import__("vllm").__version__}
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        _reply(replies, {"error": f"{type(e).__name__}: {e}"})
        return 1
    _reply(replies, {"ok": info})
    serve(runner, sys.stdin, replies)
    return 0


if __name__ == "__main__":  # vLLM starts its workers by spawn, which imports this module again
    sys.exit(main(sys.argv[1:]))
