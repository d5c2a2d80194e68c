"""`steered_vllm`: the creative tasks on a vLLM engine steered in every worker, as `steered_hf` runs them on HF.

lm-eval lives in the project's environment and vLLM in its own (`.venv-vllm`), so this model drives the vLLM
backend's `Engine` (one runner process; backends/vllm) instead of `vllm.LLM` in this process. model_args:
steered_hf's (pretrained, direction, layer, alpha, norm; positions `all` only: vLLM's hook steers every
position), seed, batch_size, max_gen_toks, the vLLM engine arguments in `ENGINE_ARGS`, passed to `vllm.LLM`, and
`data_parallel_size` N: N engines, each its own runner process (on GPUs, its own tensor x pipeline parallel share
of the visible devices), every one steered in all its workers; each group of requests is split between them in
order, and request i keeps its seed wherever it runs, so N engines write what one would.
The steering belongs to the engine, not to a request, so `generate_until` groups the requests by steering
(gen_kwargs `steer: false` runs plain, as the pairwise baseline asks) and sampling, and runs each group with the
vector installed or cleared. Prompts are rendered with the chat template when a request says `chat: true` (the
creative tasks do) and stories decoded by the project's tokenizer, as on every vLLM path. Only generation:
loglikelihood requests (creative_agreement) are refused with the model to use.
"""

from __future__ import annotations

import atexit
import copy
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from creative_eval import direction as direction_mod
from creative_eval import models, sources, steering
from creative_eval.backends import vllm
from creative_eval.harness.autoload import VLLM_MODEL_NAME
from creative_eval.harness.model import Live, _as_bool, _as_float, _as_layer, _direction_arg, _refused
from creative_eval.steering import settings
from creative_eval.steering.generate import Sampling
from creative_eval.steering.settings import Steering

OWN_ARGS = ("pretrained", "direction", "layer", "alpha", "norm", "positions", "seed", "batch_size", "max_gen_toks")
ENGINE_ARGS: dict[str, type] = {  # passed to vllm.LLM as lm-eval's `vllm` model passes them
    "tensor_parallel_size": int, "pipeline_parallel_size": int, "distributed_executor_backend": str,
    "gpu_memory_utilization": float, "max_model_len": int, "max_num_seqs": int, "max_num_batched_tokens": int,
    "dtype": str, "quantization": str, "revision": str, "trust_remote_code": bool, "kv_cache_dtype": str,
    "enable_prefix_caching": bool, "cpu_offload_gb": float,
}
ALIASES = {"max_length": "max_model_len", "max_batch_size": "max_num_seqs"}  # lm-eval's `vllm` names
IGNORED = ("device",)  # lm-eval passes --device to every model; vLLM places the model itself
GEN_KWARGS = ("until", "max_gen_toks", "do_sample", "temperature", "top_p", "steer", "chat")


def _cast(name: str, value: Any) -> Any:
    kind = ENGINE_ARGS[name]
    if value is None or str(value).lower() == "none":
        return None
    if kind is bool:
        return _as_bool(name, value)
    if kind is str:
        return str(value)
    number = _as_float(name, value)
    if kind is int and number != int(number):
        raise ValueError(f"{name}={value!r} is not a whole number; write e.g. {name}=1")
    return int(number) if kind is int else number


def engine_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The vLLM engine arguments among the model_args (not data_parallel_size: see `replica_envs`), cast; an
    unknown one is refused."""
    kwargs = {k: v for k, v in kwargs.items() if k != "data_parallel_size"}
    for alias, name in ALIASES.items():
        if alias in kwargs:
            if name in kwargs:
                raise ValueError(f"{alias} and {name} are the same setting; pass one")
            kwargs[name] = kwargs.pop(alias)
    unknown = sorted(set(kwargs) - set(ENGINE_ARGS) - set(IGNORED))
    if unknown:
        raise ValueError(f"unknown model_args {unknown}; steered_vllm takes {', '.join(OWN_ARGS)} plus vLLM's "
                         f"{', '.join(sorted([*ENGINE_ARGS, *ALIASES]))}")
    return {k: _cast(k, v) for k, v in kwargs.items() if k in ENGINE_ARGS}


def _cast_int(name: str, value: Any) -> int:
    number = _as_float(name, value)
    if number != int(number) or number < 1:
        raise ValueError(f"{name}={value!r} is not a positive whole number; write e.g. {name}=1")
    return int(number)


def replica_envs(replicas: int, engine: dict[str, Any]) -> list[dict[str, str] | None]:
    """The environment of each data-parallel engine: on GPUs, replica r sees its own tensor x pipeline parallel
    devices of those visible; on CPU the replicas share the cores."""
    import torch

    if replicas == 1 or not torch.cuda.is_available():
        return [None] * replicas
    per = (engine.get("tensor_parallel_size") or 1) * (engine.get("pipeline_parallel_size") or 1)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    if len(devices) < replicas * per:
        raise ValueError(f"data_parallel_size={replicas} with {per} GPUs per engine needs {replicas * per} GPUs; "
                         f"{len(devices)} are visible")
    return [{"CUDA_VISIBLE_DEVICES": ",".join(devices[r * per : (r + 1) * per])} for r in range(replicas)]


def start(source: str, envs: list[dict[str, str] | None], engine: dict[str, Any]) -> list[vllm.Engine]:
    """The engines, started side by side; if one fails the others are stopped."""
    with ThreadPoolExecutor(len(envs)) as pool:
        futures = [pool.submit(vllm.Engine, source, env=env, **engine) for env in envs]
    started = [f.result() for f in futures if f.exception() is None]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        for e in started:
            e.close()
        raise failed[0]
    return started


def _steering(alpha: Any, norm: Any, positions: Any) -> Steering:
    setting = Steering(steering.DEFAULT_ALPHA if alpha is None else _as_float("alpha", alpha), str(norm),
                       str(positions))
    try:
        vllm.check_steering(setting)
    except ValueError:
        raise ValueError(f"positions={positions!r}: vLLM's hook steers every position; use positions=all, or "
                         "steered_hf for prompt or generated") from None
    return setting


def sampling_of(gen_kwargs: dict[str, Any], *, max_gen_toks: int, seed: int, batch_size: int) -> Sampling:
    """steered_hf's decoding rule (HFLM's): greedy unless do_sample, or a temperature above 0, asks to sample."""
    unknown = sorted(set(gen_kwargs) - set(GEN_KWARGS))
    if unknown:
        raise ValueError(f"steered_vllm: gen_kwargs {unknown} are not supported; it reads {', '.join(GEN_KWARGS)}")
    sample = gen_kwargs.get("do_sample")
    temperature = 0.0 if sample is False else float(gen_kwargs.get("temperature", 1.0 if sample else 0.0))
    return Sampling(max_new_tokens=int(gen_kwargs.get("max_gen_toks", max_gen_toks)), temperature=temperature,
                    top_p=float(gen_kwargs.get("top_p", 1.0)), seed=seed, batch_size=batch_size)


def cut(text: str, until: list[str]) -> str:
    """The story up to its first stop string (the engine stops at end tokens only: it sees token ids)."""
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text


@register_model(VLLM_MODEL_NAME)
class SteeredVLLM(TemplateLM, Live):
    """The creative tasks' generations through `backends.vllm.Engine`, steered by `Steer.of(direction, setting)`."""

    live: "SteeredVLLM | None" = None  # the instance of this process (its engine), for callers and tests

    def __init__(self, pretrained: str = models.EMBEDDED, direction: str = "auto", layer: Any = None,
                 alpha: Any = None, norm: str = "relative", positions: str = "all", seed: Any = 0,
                 batch_size: Any = "auto", max_gen_toks: Any = 256, **kwargs: Any):
        super().__init__()
        try:  # every argument is checked before anything loads or starts
            self.steering = _steering(alpha, norm, positions)
            layer = _as_layer(layer)
            named = _direction_arg(direction)
            self.seed = int(_as_float("seed", seed))
            self.batch_size = None if str(batch_size).startswith("auto") else _cast_int("batch_size", batch_size)
            self.max_gen_toks = _cast_int("max_gen_toks", max_gen_toks)
            self.engine_args = engine_args(dict(kwargs))
            self.replicas = _cast_int("data_parallel_size", kwargs.get("data_parallel_size", 1))
            envs = replica_envs(self.replicas, self.engine_args)
            self.model_id = str(pretrained)
            source = vllm.source_of(self.model_id)
            self.direction, self.direction_file, self.tokenizer = self._direction(named, source, layer)
            self.steer = vllm.steer_for(self.direction, self.steering)
        except (ValueError, OSError, models.ModelLoadError) as e:
            raise _refused(e, VLLM_MODEL_NAME) from None
        self.engines = start(source, envs, self.engine_args)
        self.engine = self.engines[0]
        self._tokenizers = [self.tokenizer] + [copy.deepcopy(self.tokenizer) for _ in self.engines[1:]]  # one a thread
        atexit.register(self.close)
        self._hf: tuple[Any, Any] | None = None
        SteeredVLLM.live = Live.last = self

    def _direction(self, named: sources.Named, source: str, layer: int | None):
        """A direction file needs only the tokenizer here; a source name loads the HF model once to extract it
        (cached), as `generate --backend vllm` does."""
        if named.loaded is None:
            model, tokenizer = models.load(self.model_id)
            d, path = sources.resolve(named, model, tokenizer, self.model_id, layer)
            return d, path, tokenizer
        d = vllm.check_direction(named.loaded, source, str(named))
        sources.check_layer(d, layer, named)
        return d, str(named), vllm.tokenizer_of(source)

    def close(self) -> None:
        """Stop the engines (also at exit)."""
        for engine in self.engines:
            engine.close()

    def probe_inputs(self) -> tuple[Any, Any, direction_mod.Direction]:
        """The HF weights the probe reads, loaded once when a probe task first asks."""
        if self._hf is None:
            self._hf = models.load(self.model_id)
        return (*self._hf, self.direction)

    def get_model_info(self) -> dict[str, Any]:
        """What lm-eval's results record of the model: the steering as every story records it, the block index
        vLLM adds the vector at, the engine's arguments and vLLM's version."""
        recorded = settings.story_settings(self.direction, settings.STEERED, self.steering, model_id=self.model_id,
                                           direction_file=self.direction_file, backend=vllm.BACKEND,
                                           vllm_layer=self.steer[0])
        return {VLLM_MODEL_NAME: {**recorded, "engine": self.engine_args, "data_parallel_size": self.replicas,
                                  "vllm": self.engine.info["vllm"]}}

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return self.tokenizer(string, add_special_tokens=bool(add_special_tokens)).input_ids

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Each group of requests with the same steering and sampling in one engine call (the steered group with
        the vector installed, the plain one with it cleared); answers in the requests' order."""
        groups: dict[tuple[bool, bool, Sampling], list[int]] = {}
        stops: list[list[str]] = []
        for i, req in enumerate(requests):
            gen_kwargs = dict(req.args[1])
            steer = _as_bool("steer", gen_kwargs.get("steer", True))
            chat = _as_bool("chat", gen_kwargs.get("chat", False))
            until = gen_kwargs.get("until") or []
            stops.append([until] if isinstance(until, str) else list(until))
            sampling = sampling_of(gen_kwargs, max_gen_toks=self.max_gen_toks, seed=self.seed,
                                   batch_size=self.batch_size or len(requests))
            groups.setdefault((steer, chat, sampling), []).append(i)
        texts: list[str] = [""] * len(requests)
        for (steer, chat, sampling), rows in groups.items():
            gens = self._generate([requests[i].args[0] for i in rows], steer, chat, sampling)
            for i, g in zip(rows, gens):
                texts[i] = cut(g.text, stops[i])
                self.cache_hook.add_partial("generate_until", requests[i].args, texts[i])
        for engine in self.engines:
            engine.steer(None)
        return texts

    def _generate(self, prompts: list[str], steer: bool, chat: bool, sampling: Sampling) -> list:
        """The prompts split in order between the engines, run side by side; prompt i is seeded as request i."""
        share = -(-len(prompts) // len(self.engines))
        starts = range(0, len(prompts), share)
        with ThreadPoolExecutor(len(self.engines)) as pool:
            parts = pool.map(lambda r: vllm.generate(self.engines[r[0]], self._tokenizers[r[0]],
                                                     prompts[r[1] : r[1] + share], steer=self.steer if steer else None,
                                                     sampling=sampling, template=chat, first_index=r[1]),
                             enumerate(starts))
            return [g for part in parts for g in part]

    def _loglikelihood_tokens(self, requests, **kwargs: Any):
        raise NotImplementedError("steered_vllm generates only: loglikelihood tasks (creative_agreement) run on "
                             "steered_hf (lm_eval --model steered_hf --tasks creative_agreement)")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self._loglikelihood_tokens(requests)
