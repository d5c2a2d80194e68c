"""Judge presets: YAML files in `judges/preset_files/` (or any path) naming backend, model,
templates (`template_rate` / `template_compare`: a file stem in `judges/template_files/`, or `ensemble`), the
pairwise `tie_band` and parse mode. Adding a judge is adding a file; a bad file fails naming the file and field."""

from __future__ import annotations

from pathlib import Path

import yaml

from creative_eval.judges import templates
from creative_eval.judges.base import Templates
from creative_eval.records import LENGTH_CONTROLS

PRESET_DIR = Path(__file__).resolve().parent / "preset_files"
BACKENDS = ("hf", "openai", "probe")
FIELDS = {"backend", "model", "base_url", "api_key_env", "parse", "template_rate", "template_compare", "dtype",
          "device_map", "concurrency", "batch_size", "tie_band", "scale", "layer", "direction", "timeout_s", "id",
          "max_input_tokens", "max_input_chars", "min_label_mass", "tokens", "length_control"}
POSITIVE_INTS = ("concurrency", "batch_size", "layer", "max_input_tokens", "max_input_chars")
PROBE_TOKENS = ("input+response", "response")  # a probe judge reads the story, never the prompt alone
NUMBERS = {"timeout_s": 0.0, "tie_band": -1.0, "min_label_mass": -1.0}  # field -> a value it must exceed


class PresetError(ValueError):
    """A preset file that cannot define a judge."""


def path_of(name: str | Path) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    return PRESET_DIR / f"{name}.yaml"


def load(name: str | Path) -> dict:
    """The preset as a dict with `id` set (defaults to the file stem), validated field by field, and its
    `templates` resolved: read once, then carried whole to `judges.load_judge`."""
    path = path_of(name)
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise PresetError(f"judge preset {name!r}: no file {path}; known presets: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise PresetError(f"{path}: not valid YAML ({' '.join(str(e).split())}); fix the syntax at the line "
                          "shown") from None
    if not isinstance(data, dict):
        raise PresetError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    unknown = set(data) - FIELDS
    if unknown:
        raise PresetError(f"{path}: unknown field(s) {sorted(unknown)}; allowed: {sorted(FIELDS)}")
    if data.get("backend") not in BACKENDS:
        raise PresetError(f"{path}: field 'backend' must be one of {BACKENDS}, got {data.get('backend')!r}")
    if data.get("parse", "logprobs") not in ("logprobs", "generate"):
        raise PresetError(f"{path}: field 'parse' must be 'logprobs' or 'generate', got {data['parse']!r}")
    if data["backend"] == "openai" and not data.get("model"):
        raise PresetError(f"{path}: field 'model' is required for backend 'openai'")
    resolved = {}
    for field, kind in (("template_rate", "rate"), ("template_compare", "compare")):
        try:
            resolved[kind] = templates.resolve(str(data[field]) if field in data else None, kind)
        except ValueError as e:
            raise PresetError(f"{path}: field {field!r}: {e}") from None
    if data.get("tokens", PROBE_TOKENS[0]) not in PROBE_TOKENS:
        raise PresetError(f"{path}: field 'tokens' must be one of {PROBE_TOKENS}, got {data['tokens']!r}")
    if data.get("length_control", "none") not in LENGTH_CONTROLS:
        raise PresetError(f"{path}: field 'length_control' must be one of {LENGTH_CONTROLS}, got {data['length_control']!r}")
    if data.get("length_control", "none") != "none" and data.get("direction") not in ("humans", "hanna"):
        raise PresetError(f"{path}: field 'length_control' applies to 'direction: humans' or 'hanna' only, not to "
                          f"{data.get('direction', 'auto')!r}; drop it or set direction: humans")
    _check_numbers(path, data)
    return {"id": path.stem, **data, "templates": Templates(resolved["rate"], resolved["compare"])}


def _check_numbers(path: Path, data: dict) -> None:
    """Counts are whole numbers >= 1 and times/bands real numbers in range, so a bad value fails here, naming
    the field, not deep inside a backend."""
    for field in POSITIVE_INTS:
        value = data.get(field)
        if field in data and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PresetError(f"{path}: field {field!r} is {value!r}; write a whole number >= 1, e.g. 4")
    for field, above in NUMBERS.items():
        value = data.get(field)
        if field in data and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > above):
            raise PresetError(f"{path}: field {field!r} is {value!r}; write a number above {above:g}")
