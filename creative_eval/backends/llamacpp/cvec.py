"""llama.cpp control vectors: the layer mapping, the GGUF file llama.cpp loads, and GGUF model metadata.

Layer mapping (proven by tests/test_llamacpp.py, not assumed): llama.cpp adds control vector `direction.<il>`
to the output of its block il, counting blocks from 0, so our layer l (output of decoder block l, counting
from 1; HF `hidden_states[l]`) is llama.cpp's il = l - 1. llama.cpp never steers il 0, so layer 1 cannot be
exported. The file holds the already scaled vector (`Steer.of(direction, setting)`): with
`--control-vector FILE` or `--control-vector-scaled FILE 1.0`, llama.cpp steers exactly as `steering` does
with the same alpha and norm, at every position (positions `all`).

Only the `gguf` package is needed here, not llama-cpp-python.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from creative_eval import outputs
from creative_eval.direction import Direction, DirectionMismatchError
from creative_eval.steering import Steer, Steering

ARCH = "controlvector"
META_PREFIX = "creative_eval."
META_KEYS = ("model_id", "config_fingerprint", "hidden_size", "num_layers", "layer_convention")
GGUF_MAGIC = b"GGUF"


def llamacpp_layer(layer: int, num_layers: int) -> int:
    """llama.cpp's control-vector index il for our layer l (see the module docstring)."""
    if not 2 <= layer <= num_layers:
        raise ValueError(f"layer {layer} cannot be steered by llama.cpp: its control vectors reach layers 2..{num_layers} "
                         "of this model (llama.cpp never steers the first block's output); extract the direction at "
                         "another layer with `creative-eval direction --layer L`")
    return layer - 1


def scaled_vector(direction: Direction, setting: Steering) -> np.ndarray:
    """lambda * a exactly as `steering.Steer.of` builds it, as float32."""
    steer = Steer.of(direction, setting)
    return steer.vector.detach().float().cpu().numpy().astype(np.float32)


@dataclass(frozen=True)
class GGUFShape:
    """What a GGUF model file says about its architecture: enough to refuse a direction of another shape."""

    arch: str
    hidden_size: int
    num_layers: int


def check_shape(direction: Direction, shape: GGUFShape, model: str, source: str = "direction") -> None:
    """Refuse a direction whose hidden size or layer count differs from the GGUF model's (as Direction.check does
    for HF models; a GGUF has no HF config, so the architecture fingerprint is not compared)."""
    want = {"hidden_size": str(shape.hidden_size), "num_layers": str(shape.num_layers)}
    bad = {k: (direction.meta.get(k), v) for k, v in want.items() if direction.meta.get(k) != v}
    if bad or tuple(direction.vector.shape) != (shape.hidden_size,):
        detail = ", ".join(f"{k}: file {a} vs model {b}" for k, (a, b) in bad.items()) or "vector length differs"
        raise DirectionMismatchError(
            f"{source} was made for model {direction.meta.get('model_id')!r} and does not fit {model} ({detail}); "
            f"extract a new one with `creative-eval direction --model {model}`"
        )


def write(direction: Direction, setting: Steering, path: str | Path, *, model_hint: str, num_layers: int) -> Path:
    """Write the scaled direction as a control-vector GGUF (one F32 tensor `direction.<il>`).

    `controlvector.layer_count` is the number of direction tensors, as llama.cpp's cvector-generator writes it;
    `creative_eval.*` keys keep the direction's metadata, alpha, norm and our layer number."""
    import gguf

    path = Path(path)
    if path.suffix != ".gguf":
        raise ValueError(f"{path}: llama.cpp reads control vectors from .gguf files; change the extension")
    il = llamacpp_layer(direction.layer, num_layers)
    vector = scaled_vector(direction, setting)
    meta = {**{k: direction.meta[k] for k in META_KEYS if k in direction.meta}, "layer": str(direction.layer),
            "alpha": repr(float(setting.alpha)), "norm": setting.norm, "lambda_norm": f"{float(np.linalg.norm(vector)):.6g}"}
    with outputs.replacing(path) as tmp:  # atomic: llama.cpp never sees a half-written file, nor does a full disk leave one
        writer = gguf.GGUFWriter(str(tmp), arch=ARCH)
        try:
            writer.add_string(f"{ARCH}.model_hint", model_hint)
            writer.add_int32(f"{ARCH}.layer_count", 1)
            for key, value in meta.items():
                writer.add_string(META_PREFIX + key, value)
            writer.add_tensor(f"direction.{il}", vector)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
        try:
            whole = np.array_equal(read(tmp).directions.get(il), vector)
        except Exception:
            whole = False
        if not whole:  # the gguf writer does not always report a write the disk refused
            raise outputs.short_write(tmp)
    return path


@dataclass(frozen=True)
class ControlVector:
    """The tensors of a control-vector GGUF: {il: vector}, plus its string metadata."""

    directions: dict[int, np.ndarray]
    meta: dict[str, str]


def read(path: str | Path) -> ControlVector:
    """Read a control-vector GGUF as llama.cpp does: every tensor must be `direction.<il>`, il >= 1, 1-D F32."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = reader.get_field("general.architecture")
    if arch is None or arch.contents() != ARCH:
        raise ValueError(f"{path}: not a control-vector GGUF (general.architecture is not {ARCH!r})")
    directions: dict[int, np.ndarray] = {}
    for t in reader.tensors:
        prefix, _, index = t.name.partition(".")
        if prefix != "direction" or not index.isdigit() or int(index) < 1:
            raise ValueError(f"{path}: tensor {t.name!r} is not direction.<il> with il >= 1")
        if t.tensor_type != gguf.GGMLQuantizationType.F32 or len(t.shape) != 1:
            raise ValueError(f"{path}: tensor {t.name!r} is not a 1-D F32 vector")
        directions[int(index)] = np.array(t.data, dtype=np.float32)
    meta = {k: str(f.contents()) for k, f in reader.fields.items() if k.startswith((ARCH + ".", META_PREFIX))}
    return ControlVector(directions, meta)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError("truncated GGUF header")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read_exact(f, 8))
    return _read_exact(f, n).decode("utf-8", errors="replace")


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def _value(f: BinaryIO, kind: int):
    """One metadata value; arrays (vocabularies, merges) are skipped and give None."""
    if kind == _STRING:
        return _string(f)
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, _read_exact(f, struct.calcsize(fmt)))[0]
    if kind != _ARRAY:
        raise ValueError(f"unknown GGUF value type {kind}")
    item, n = struct.unpack("<IQ", _read_exact(f, 12))
    if item in _SCALARS:
        f.seek(n * struct.calcsize(_SCALARS[item]), os.SEEK_CUR)
    else:
        for _ in range(n):
            _value(f, item)
    return None


def metadata(path: str | Path) -> dict[str, object]:
    """Scalar and string metadata of a GGUF file, read from its header alone: the gguf package's reader also
    maps every tensor and decodes every vocabulary string, seconds before any check could fail."""
    out: dict[str, object] = {}
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ValueError(f"{path}: not a GGUF file")
        _version, _n_tensors, n_kv = struct.unpack("<IQQ", _read_exact(f, 20))
        for _ in range(n_kv):
            key = _string(f)
            (kind,) = struct.unpack("<I", _read_exact(f, 4))
            value = _value(f, kind)
            if value is not None:
                out[key] = value
    return out


def model_gguf(model: str) -> Path:
    """The GGUF file behind a model name ('embedded' or a .gguf path), checked before anything loads."""
    from creative_eval import models

    if model == models.EMBEDDED:
        return models.embedded_gguf()
    path = Path(model).expanduser()
    if path.suffix != ".gguf":
        raise ValueError(f"--model {model}: llama.cpp runs GGUF files; pass a .gguf path or 'embedded' "
                         "(or use --backend hf for Hugging Face models)")
    if not path.is_file():
        raise ValueError(f"--model {model}: no such GGUF file; check the path")
    return path


def gguf_shape(path: str | Path) -> GGUFShape:
    """Architecture, hidden size and block count of a GGUF model file."""
    meta = metadata(path)
    arch = str(meta.get("general.architecture", ""))
    try:
        return GGUFShape(arch, int(meta[f"{arch}.embedding_length"]), int(meta[f"{arch}.block_count"]))
    except KeyError as e:
        raise ValueError(f"{path}: GGUF metadata lacks {e.args[0]}; is it a model file?") from None
