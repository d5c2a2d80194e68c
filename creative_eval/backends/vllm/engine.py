"""The vLLM backend: the three conditions through vLLM, steered by the project's own rule in every worker.

vLLM pins another transformers than the project, so it lives in its own environment (`.venv-vllm`, made by
`make setup`) and runs in its own process: `Engine` starts `runner` there (the interpreter is
`$CREATIVE_EVAL_VLLM_PYTHON`, else `.venv-vllm/bin/python` beside the package's checkout) and exchanges one
JSON line per request with it. Only token ids cross: prompts are rendered and stories decoded here by the
project's tokenizer, as on the HF path. The steering vector is `Steer.of(direction, setting)`, the HF
backend's, added to the output of block l in every worker vLLM starts (`hook`); only positions `all`. The
steering is global to the engine, so the requests of one condition go together, and the prefix cache is
dropped whenever it changes. Stories are resumable batch by batch, as on the HF path (`generate.append_resumed`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from creative_eval import activations, models
from creative_eval.backends.vllm.runner import STEER_ENV
from creative_eval.direction import Direction, DirectionMismatchError
from creative_eval.records import CONDITIONS, Pair, Story
from creative_eval.steering import generate as hf_generate
from creative_eval.steering import hooks, settings
from creative_eval.steering.generate import Generation, Sampling
from creative_eval.steering.settings import Steering

BACKEND = "vllm"
PYTHON_ENV = "CREATIVE_EVAL_VLLM_PYTHON"
PACKAGE = Path(__file__).resolve().parents[2]  # the creative_eval package folder
ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"}


class VLLMError(RuntimeError):
    """vLLM is missing, did not start, or refused a request; the message says what to do."""


def check_steering(setting: Steering) -> None:
    """The vLLM hook adds the vector at every position."""
    if setting.positions != "all":
        raise ValueError(f"--positions {setting.positions}: the vLLM backend steers every position; use "
                         "--positions all with --backend vllm, or --backend hf")


def vllm_layer(layer: int, num_layers: int) -> int:
    """Our layer l (output of block l counted from 1) is vLLM's `model.model.layers[l - 1]`."""
    if isinstance(layer, bool) or int(layer) != layer or not 1 <= int(layer) <= num_layers:
        raise ValueError(f"layer {layer!r} is out of range: this model has layers 1..{num_layers}")
    return int(layer) - 1


def steer_for(direction: Direction, setting: Steering) -> tuple[int, list[float]]:
    """(vLLM block index, the vector lambda * a as the HF backend adds it) for a direction."""
    check_steering(setting)
    num_layers = int(direction.meta.get("num_layers", direction.layer))
    return vllm_layer(direction.layer, num_layers), hooks.Steer.of(direction, setting).vector.float().tolist()


def python() -> str:
    """The interpreter with vLLM: $CREATIVE_EVAL_VLLM_PYTHON, else the checkout's .venv-vllm."""
    chosen = os.environ.get(PYTHON_ENV) or str(PACKAGE.parent / ".venv-vllm" / "bin" / "python")
    if not Path(chosen).is_file():
        raise VLLMError(f"the vllm backend needs vLLM's own environment: {chosen} is missing; run `make setup` "
                        f"(it makes .venv-vllm), or set {PYTHON_ENV} to a Python where vllm is installed")
    return chosen


def source_of(model: str) -> str:
    """What vLLM loads: `embedded` and .gguf files as their cached de-quantised folder (the one the HF backend
    loads), a folder or a Hugging Face id as given."""
    return models.resolve(model)


def tokenizer_of(source: str):
    """The project's tokenizer of a model (no weights loaded), padded as `models.load` pads it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_direction(d: Direction, source: str, where: str = "direction") -> Direction:
    """A direction checked against a model's config, as `Direction.check` does, without loading the weights."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(source)
    want = {"config_fingerprint": models.fingerprint(SimpleNamespace(config=cfg)), "hidden_size": str(cfg.hidden_size),
            "num_layers": str(cfg.num_hidden_layers)}
    bad = {k: (d.meta.get(k), v) for k, v in want.items() if d.meta.get(k) != v}
    if bad or tuple(d.vector.shape) != (cfg.hidden_size,):
        detail = ", ".join(f"{k}: file {a} vs model {b}" for k, (a, b) in bad.items())
        raise DirectionMismatchError(f"{where} was made for model {d.meta.get('model_id')!r} and does not fit this "
                                     f"model ({detail}); extract a new one with `creative-eval direction --model ...`")
    return d


def workspace() -> Path:
    """A new temporary folder holding only a link to the project's package: vLLM's PYTHONPATH, so its workers
    import the hook and nothing else of the project's environment."""
    path = Path(tempfile.mkdtemp(prefix="creative-eval-vllm-"))
    (path / "creative_eval").symlink_to(PACKAGE)
    return path


def environ(path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """vLLM's environment: `ENV_DEFAULTS`, this process's variables (not its PYTHONPATH, nor a steering file
    meant for another server), `env`, and `path` (a `workspace`) as PYTHONPATH."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", STEER_ENV)}
    return {**ENV_DEFAULTS, **inherited, **(env or {}), "PYTHONPATH": str(path)}


class Engine:
    """One vLLM engine in its own process (`runner`), steered as a whole. `engine` holds `vllm.LLM` arguments
    (tensor_parallel_size, pipeline_parallel_size, distributed_executor_backend, max_model_len, max_num_seqs,
    dtype, gpu_memory_utilization); `env` adds environment variables for vLLM (defaults: `ENV_DEFAULTS`)."""

    def __init__(self, model: str, *, env: dict[str, str] | None = None, **engine: Any):
        interpreter = python()  # before anything is made: a missing environment leaves nothing behind
        self._path = workspace()
        self.log = self._path / "vllm.log"
        spec = {"model": model, "engine": engine}
        self._steering: tuple[int, tuple[float, ...]] | None = None
        self._busy = False  # a request is out: an interrupted caller must not wait for its answer
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen([interpreter, "-m", "creative_eval.backends.vllm.runner", json.dumps(spec)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                          env=environ(self._path, env),
                                          cwd=self._path, text=True, start_new_session=True)
        try:
            self.info = self._reply()
        except BaseException:
            self.close()
            raise
        self.workers: list[dict[str, Any]] = self.info["workers"]

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def _reply(self) -> Any:
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line:
            self._proc.wait(timeout=60)
            raise VLLMError(f"the vLLM process exited (code {self._proc.returncode}); its log ends:\n{self.tail()}")
        reply = json.loads(line)
        if "error" in reply:
            raise VLLMError(f"vLLM: {reply['error']}\nits log ends:\n{self.tail()}")
        return reply["ok"]

    def _ask(self, op: str, **request: Any) -> Any:
        if self._proc.poll() is not None or self._proc.stdin is None:
            raise VLLMError(f"the vLLM process is not running (code {self._proc.returncode}); its log ends:\n"
                            f"{self.tail()}")
        self._busy = True
        self._proc.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self._proc.stdin.flush()
        reply = self._reply()
        self._busy = False
        return reply

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def steer(self, steer: tuple[int, Sequence[float]] | None) -> list[dict[str, Any]]:
        """Install (index, vector) in every worker, or clear it with None; nothing is sent when it is unchanged.
        Returns each worker's state (`hook.status`)."""
        key = None if steer is None else (int(steer[0]), tuple(float(x) for x in steer[1]))
        if key != self._steering:
            self.workers = self._ask("steer", index=None if key is None else key[0],
                                     vector=None if key is None else list(key[1]))
            self._steering = key
        return self.workers

    def status(self) -> list[dict[str, Any]]:
        return self._ask("status")

    def generate(self, prompts: Sequence[Sequence[int]], *, max_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, seeds: Sequence[int] | None = None, stop: Sequence[int] = ()) -> list[list[int]]:
        """New token ids per prompt, all prompts submitted together, one seed per prompt."""
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        return self._ask("generate", prompts=[list(map(int, p)) for p in prompts], max_tokens=max_tokens,
                         temperature=temperature, top_p=top_p, seeds=seeds, stop=sorted(map(int, stop)))

    def next_logprobs(self, prompts: Sequence[Sequence[int]]) -> np.ndarray:
        """log p(next token | prompt) over the vocabulary for each prompt, under the current steering."""
        return np.array(self._ask("logprobs", prompts=[list(map(int, p)) for p in prompts]), dtype=np.float64)

    def timing(self, on: bool) -> dict[str, Any]:
        """Start (on) or read and stop (off) the first worker's forward timers: forwards, seconds, tokens."""
        return self._ask("timing", on=on)[0]

    def profile(self, on: bool) -> dict[str, Any] | None:
        """Start (on) or stop (off) torch's profiler in the first worker; off returns its op table and each op's
        self CPU time in microseconds."""
        return self._ask("profile", on=on)[0]

    def close(self) -> None:
        """Stop vLLM: asked to when idle; when a request was cut short (Ctrl-C), or the runner does not stop in
        time, its whole process group (the runner's own session: engine core and workers) is killed."""
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None and not self._busy:
            try:
                self._ask("close")
                proc.wait(timeout=60)
            except (VLLMError, OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if proc is not None:
            try:
                os.killpg(proc.pid, 9)  # whatever of the session is left
            except ProcessLookupError:
                pass
            proc.wait()
        shutil.rmtree(self._path, ignore_errors=True)


def request_seed(seed: int, index: int) -> int:
    """The seed of the index-th story of a condition: its own random stream, whatever else runs beside it, so
    a resumed run and an uninterrupted one sample alike (vLLM seeds each request; HF seeds each batch). Hashed
    into 31 bits: vLLM keeps no more of a seed."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def generate(engine: Engine, tokenizer, prompts: Sequence[str], *, steer: tuple[int, Sequence[float]] | None = None,
             sampling: Sampling = Sampling(), template: bool = True, first_index: int = 0) -> list[Generation]:
    """Stories through vLLM, steered when `steer` = (block index, vector) is given: rendered by the project's
    tokenizer (`activations.encode`, the HF path's tokens), submitted `sampling.batch_size` at a time, cut at the
    first end token and decoded as the HF path decodes. Prompt i is seeded with `request_seed(seed, first_index
    + i)`; temperature 0 is greedy."""
    batch = activations.encode(tokenizer, list(prompts), template=template)
    rows = [batch.input_ids[i][batch.attention_mask[i].bool()].tolist() for i in range(len(prompts))]
    eos = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
    engine.steer(steer)
    out: list[Generation] = []
    for k in range(0, len(rows), sampling.batch_size):
        chunk = rows[k : k + sampling.batch_size]
        seeds = [request_seed(sampling.seed, first_index + k + i) for i in range(len(chunk))]
        for new in engine.generate(chunk, max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                   top_p=sampling.top_p, seeds=seeds, stop=eos):
            n = next((i for i, t in enumerate(new) if t in eos), len(new))
            out.append(Generation(text=tokenizer.decode(new[:n], skip_special_tokens=True), n_tokens=n))
    return out


def story_settings(direction: Direction, condition: str, steering: Steering, sampling: Sampling, *, model_id: str,
                   direction_file: str) -> dict[str, Any]:
    """What a story of `condition` made through vLLM records: the HF backend's settings, `backend: vllm` and the
    block index the vector was added to."""
    num_layers = int(direction.meta.get("num_layers", direction.layer))
    return settings.story_settings(direction, condition, steering, model_id=model_id, direction_file=direction_file,
                                   **sampling.__dict__, backend=BACKEND,
                                   vllm_layer=vllm_layer(direction.layer, num_layers))


def story_batches(engine: Engine, tokenizer, pairs: Sequence[Pair], direction: Direction, *,
                  steering: Steering = Steering(), conditions: Sequence[str] = CONDITIONS,
                  sampling: Sampling = Sampling(), model_id: str = "", direction_file: str = "",
                  done: Callable[[str, Pair], bool] = lambda condition, pair: False,
                  progress: bool = False) -> Iterator[list[Story]]:
    """`generate.story_batches` through vLLM: the conditions one after another (the steering is the engine's),
    the vector installed for `induced` only."""
    steer = steer_for(direction, steering)
    for condition, b, batch, prompts in hf_generate.condition_batches(pairs, conditions, sampling.batch_size,
                                                                      done=done, progress=progress):
        recorded = story_settings(direction, condition, steering, sampling, model_id=model_id,
                                  direction_file=direction_file)
        gens = generate(engine, tokenizer, prompts, steer=steer if settings.is_steered(condition) else None,
                        sampling=sampling, template=direction.template, first_index=b * sampling.batch_size)
        yield [Story(prompt_id=p.id, condition=condition, prompt=prompt, text=g.text,
                     settings={**recorded, "n_tokens": g.n_tokens}) for p, prompt, g in zip(batch, prompts, gens)]


def resume(path: str | Path, engine: Engine, tokenizer, pairs: Sequence[Pair], direction: Direction, *,
           steering: Steering = Steering(), conditions: Sequence[str] = CONDITIONS, sampling: Sampling = Sampling(),
           model_id: str = "", direction_file: str = "", progress: bool = False) -> list[Story]:
    """vLLM stories appended to `path` batch by batch, resumed as the HF path resumes (`append_resumed`): a
    story there with the same settings is kept, one with other settings or from another backend refused."""
    how = {"steering": steering, "sampling": sampling, "model_id": model_id, "direction_file": direction_file}
    return hf_generate.append_resumed(
        path, pairs, conditions, want=lambda condition: story_settings(direction, condition, **how),
        batches=lambda done: story_batches(engine, tokenizer, pairs, direction, conditions=conditions, done=done,
                                           progress=progress, **how))


def max_model_len(tokenizer, prompts: Sequence[str], sampling: Sampling, template: bool = True) -> int:
    """Positions one story needs: its longest prompt's tokens plus the new tokens, rounded up to 256."""
    longest = int(activations.encode(tokenizer, list(prompts), template=template).attention_mask.sum(1).max())
    return -(-(longest + sampling.max_new_tokens) // 256) * 256
