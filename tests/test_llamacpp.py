"""The llama.cpp side: the control-vector file as llama.cpp's own GGUF reader sees it, the layer mapping measured
against HF steering, the llamacpp generation backend, the steered OpenAI-compatible server, and bad inputs."""

from __future__ import annotations

import ctypes
import json
import math
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from creative_eval import activations, direction, models, steering
from creative_eval.steering import Steering
from creative_eval import cli
from creative_eval.backends.llamacpp import cvec
from creative_eval.direction import Direction, DirectionMismatchError
from creative_eval.steering.generate import Sampling
from creative_eval.backends.llamacpp.server import LocalServer, LocalServerError
from creative_eval.records import CONDITIONS, Story, read_records

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra `server`)")
from creative_eval.backends import llamacpp  # noqa: E402  (needs llama_cpp for everything but its helpers)

ALPHA = 0.5  # relative norm: large enough that the shift is far above the Q4-vs-fp32 noise
PROMPTS = ["Write a short story about a lighthouse keeper.", "Describe a kitchen.",
           "Tell me about a dragon who runs a bakery."]
THREADS = 1


def tiny_direction(layer: int = 2, hidden: int = 64, num_layers: int = 4) -> Direction:
    vector = torch.ones(hidden) / math.sqrt(hidden)
    meta = {"model_id": "tiny", "layer": str(layer), "hidden_size": str(hidden), "num_layers": str(num_layers),
            "config_fingerprint": "0" * 16, "raw_norm": "2.0", "resid_norm": "10.0"}
    return Direction(vector, meta)


# --- the file and the mapping rule (no model) ---------------------------------------------------------------------


def test_layer_l_is_llamacpp_index_l_minus_1_and_layer_1_is_refused():
    assert cvec.llamacpp_layer(17, 30) == 16
    assert cvec.llamacpp_layer(30, 30) == 29
    for layer in (1, 31):
        with pytest.raises(ValueError, match=r"reach layers 2\.\.30"):
            cvec.llamacpp_layer(layer, 30)


def test_cvec_buffer_starts_at_layer_1():
    v = np.arange(1, 5, dtype=np.float32)
    data = llamacpp.cvec_buffer(v, 3)
    assert data.shape == (12,) and not data[:8].any() and (data[8:] == v).all()


def test_written_vector_is_alpha_times_scale_times_direction(tmp_path):
    d = tiny_direction()
    path = cvec.write(d, Steering(0.3, "relative"), tmp_path / "d.gguf", model_hint="llama", num_layers=4)
    got = cvec.read(path)
    assert list(got.directions) == [1]
    expected = 0.3 * 10.0 * d.vector.numpy()
    assert np.allclose(got.directions[1], expected, rtol=1e-6)
    assert got.meta["creative_eval.layer"] == "2" and got.meta["creative_eval.norm"] == "relative"


class GGMLGGUF:
    """llama.cpp's own GGUF reader (ggml's gguf_* C functions, shipped with llama-cpp-python), used read-only."""

    def __init__(self):
        lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))

        class Params(ctypes.Structure):
            _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]

        self.Params = Params
        sig = {
            "gguf_init_from_file": ([ctypes.c_char_p, Params], ctypes.c_void_p),
            "gguf_free": ([ctypes.c_void_p], None),
            "gguf_find_key": ([ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int64),
            "gguf_get_val_str": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_char_p),
            "gguf_get_val_i32": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_int32),
            "gguf_get_n_tensors": ([ctypes.c_void_p], ctypes.c_int64),
            "gguf_get_tensor_name": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_char_p),
            "gguf_get_tensor_type": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_int),
            "gguf_get_tensor_size": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_size_t),
            "gguf_get_tensor_offset": ([ctypes.c_void_p, ctypes.c_int64], ctypes.c_size_t),
            "gguf_get_data_offset": ([ctypes.c_void_p], ctypes.c_size_t),
        }
        for name, (args, res) in sig.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        self.lib = lib

    def read(self, path: Path) -> dict:
        """Metadata and tensors as llama.cpp's control-vector loader would see them."""
        g = self.lib
        ctx = g.gguf_init_from_file(str(path).encode(), self.Params(True, None))
        assert ctx, f"llama.cpp's GGUF reader refused {path}"
        try:
            def key(name: str, getter):
                k = g.gguf_find_key(ctx, name.encode())
                return None if k < 0 else getter(ctx, k)

            out = {"arch": key("general.architecture", g.gguf_get_val_str),
                   "hint": key("controlvector.model_hint", g.gguf_get_val_str),
                   "layer_count": key("controlvector.layer_count", g.gguf_get_val_i32), "tensors": {}}
            raw = path.read_bytes()
            for i in range(g.gguf_get_n_tensors(ctx)):
                start = g.gguf_get_data_offset(ctx) + g.gguf_get_tensor_offset(ctx, i)
                data = np.frombuffer(raw[start : start + g.gguf_get_tensor_size(ctx, i)], dtype=np.float32)
                out["tensors"][g.gguf_get_tensor_name(ctx, i).decode()] = (g.gguf_get_tensor_type(ctx, i), data)
            return out
        finally:
            g.gguf_free(ctx)


# --- the embedded model: one direction, one exported file, one engine ----------------------------------------------


@pytest.fixture(scope="session")
def auto_direction(embedded) -> tuple[Direction, Path]:
    model, tokenizer = embedded
    return direction.auto(model, tokenizer, models.EMBEDDED)


@pytest.fixture(scope="session")
def exported(auto_direction, tmp_path_factory) -> Path:
    """`creative-eval export --format llamacpp-cvec` of the embedded model's default direction (GGUF path:
    no HF model load)."""
    out = tmp_path_factory.mktemp("cvec") / "d.gguf"
    code = cli.main(["export", "--format", "llamacpp-cvec", "--model", "embedded", "--direction",
                     str(auto_direction[1]), "--alpha", str(ALPHA), "--norm", "relative", "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def engine():
    eng = llamacpp.Engine(models.embedded_gguf(), n_seq=3, n_ctx_seq=512, n_threads=THREADS)
    yield eng
    eng.close()


def test_export_is_a_control_vector_llamacpp_reads(exported, auto_direction):
    d, _ = auto_direction
    seen = GGMLGGUF().read(exported)
    assert (seen["arch"], seen["hint"], seen["layer_count"]) == (b"controlvector", b"llama", 1)
    assert list(seen["tensors"]) == [f"direction.{d.layer - 1}"]
    ggml_type, data = seen["tensors"][f"direction.{d.layer - 1}"]
    assert ggml_type == 0  # GGML_TYPE_F32
    expected = ALPHA * d.resid_norm * d.vector.numpy()
    assert data.shape == (576,) and np.allclose(data, expected, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="session")
def mapping(embedded, exported, engine) -> dict[int, float]:
    """Pearson r, per llama.cpp index il, between the next-token log-prob shift that steering causes in HF and
    in llama.cpp, both steered with the vector read back from the exported file."""
    model, tokenizer = embedded
    file = cvec.read(exported)
    (il_file, vector), = file.directions.items()
    layer = int(file.meta["creative_eval.layer"])
    batch = activations.encode(tokenizer, PROMPTS)
    rows = [batch.input_ids[i][batch.attention_mask[i].bool()].tolist() for i in range(len(PROMPTS))]
    assert rows == [engine.prompt_tokens(p) for p in PROMPTS]  # both backends read the same tokens

    def hf(steers: list[steering.Steer]) -> np.ndarray:
        out = []
        with torch.inference_mode(), steering.steering(model, steers):
            for r in rows:
                out.append(torch.log_softmax(model(input_ids=torch.tensor([r])).logits[0, -1].double(), -1).numpy())
        return np.concatenate(out)

    def cpp(il: int | None) -> np.ndarray:
        engine.steer(None if il is None else vector, il or 0)
        return np.concatenate([engine.next_logprobs(r) for r in rows])

    hf_shift = hf([steering.Steer(layer, torch.from_numpy(vector))]) - hf([])
    plain = cpp(None)
    result = {il: float(np.corrcoef(cpp(il) - plain, hf_shift)[0, 1]) for il in (il_file - 1, il_file, il_file + 1)}
    engine.steer(None)
    print(f"layer {layer}: Pearson of the log-prob shift, llama.cpp il -> r: {result}")
    return result


def test_layer_mapping_is_measured_not_assumed(mapping, exported):
    """Which llama.cpp index il steers our layer l (output of block l = HF hidden_states[l])?

    Compared: the shift of the next-token log-probabilities (steered minus unsteered, the whole 49152-token
    vocabulary at the last prompt position of 3 chat prompts) caused by the exported vector, (a) in HF with
    `steering` at layer l on the de-quantised fp32 weights, (b) in llama.cpp with the same vector at il - 1, il,
    il + 1 on the Q4_1 GGUF (whose matmuls also quantise activations), so the two shifts are close, not equal.
    The index written to the file must be the one whose shift matches HF's (r >= 0.9; measured 0.995 at
    alpha 0.5), and its neighbours must match clearly worse (measured 0.70 and 0.73)."""
    il_file = next(iter(cvec.read(exported).directions))
    best = max(mapping, key=mapping.get)
    assert best == il_file
    assert mapping[il_file] >= 0.9
    assert max(mapping[il_file - 1], mapping[il_file + 1]) <= mapping[il_file] - 0.1


# --- generation ---------------------------------------------------------------------------------------------------


def test_batched_greedy_equals_one_prompt_at_a_time(engine):
    """Sequences decoded together in one context must not see each other (each has its own KV stream)."""
    together = llamacpp.generate(engine, PROMPTS, sampling=Sampling(max_new_tokens=12, temperature=0, batch_size=3))
    alone = llamacpp.generate(engine, PROMPTS, sampling=Sampling(max_new_tokens=12, temperature=0, batch_size=1))
    assert [g.text for g in together] == [g.text for g in alone]
    assert all(g.n_tokens == 12 for g in together)


def test_sampling_is_seeded(engine):
    s = Sampling(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=3, batch_size=3)
    first, again = (llamacpp.generate(engine, PROMPTS, sampling=s) for _ in range(2))
    other = llamacpp.generate(engine, PROMPTS, sampling=Sampling(max_new_tokens=8, temperature=1.0, seed=4,
                                                                 batch_size=3))
    assert [g.text for g in first] == [g.text for g in again] != [g.text for g in other]


def test_generate_command_llamacpp_backend(auto_direction, engine, tmp_path):
    """Three conditions through llama.cpp: induced is steered, baseline and creative (run after induced) are not."""
    out = tmp_path / "stories.jsonl"
    code = cli.main(["generate", "--backend", "llamacpp", "--model", "embedded", "--direction",
                     str(auto_direction[1]), "--alpha", str(ALPHA), "--limit", "2", "--max-new-tokens", "12",
                     "--temperature", "0", "--threads", str(THREADS), "--out", str(out)])
    assert code == 0
    stories = read_records(out, Story)
    assert [s.condition for s in stories] == [c for c in CONDITIONS for _ in range(2)]
    by = {(s.prompt_id, s.condition): s for s in stories}
    for s in stories:
        assert s.settings["backend"] == "llamacpp" and s.settings["layer"] == auto_direction[0].layer
        assert s.settings["alpha"] == (ALPHA if s.condition == "induced" else 0.0)
    plain = llamacpp.generate(engine, [s.prompt for s in stories if s.condition != "induced"],
                              sampling=Sampling(max_new_tokens=12, temperature=0, batch_size=3))
    assert [g.text for g in plain] == [s.text for s in stories if s.condition != "induced"]
    assert all(by[(pid, "induced")].text != by[(pid, "baseline")].text for pid, _ in by)


# --- the steered server -------------------------------------------------------------------------------------------


GREEDY = {"temperature": 0, "repeat_penalty": 1.0}  # the server's default repeat penalty is 1.1, Llama's 1.0


def _complete(base_url: str, prompt: str, n: int) -> str:
    body = json.dumps({"prompt": prompt, "max_tokens": n, **GREEDY}).encode()
    req = urllib.request.Request(f"{base_url}/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["choices"][0]["text"]


def _direct(prompt: str, n: int, steer: tuple[np.ndarray, int] | None) -> str:
    """The same completion through llama-cpp-python's Llama in this process (no extra buffer types)."""
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    lib.llama_model_default_params = params
    try:
        llm = llama_cpp.Llama(str(models.embedded_gguf()), n_ctx=2048, n_threads=THREADS, n_threads_batch=THREADS,
                              verbose=False)
    finally:
        lib.llama_model_default_params = default
    try:
        if steer is not None:
            llamacpp.set_cvec(llm.ctx, *steer)
        return llm.create_completion(prompt, max_tokens=n, **GREEDY)["choices"][0]["text"]
    finally:
        llm.close()


@pytest.fixture(scope="module")
def servers(auto_direction):
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    steer_args = ["--direction", str(auto_direction[1]), "--alpha", str(ALPHA), "--norm", "relative"]
    both = (LocalServer(n_threads=THREADS), LocalServer(n_threads=THREADS, extra_args=steer_args))
    try:
        with ThreadPoolExecutor(2) as pool:  # the two start-ups overlap
            list(pool.map(LocalServer.start, both))
    except LocalServerError as e:
        for srv in both:
            srv.stop()
        pytest.fail(str(e))
    yield both
    for srv in both:
        srv.stop()


def test_steered_server_differs_and_plain_server_is_the_unsteered_model(servers, auto_direction):
    plain, steered = servers
    prompt, n = "Once upon a time, in a quiet village,", 24
    got_plain, got_steered = _complete(plain.base_url, prompt, n), _complete(steered.base_url, prompt, n)
    direct_plain = _direct(prompt, n, None)
    direct_steered = _direct(prompt, n, llamacpp.steer_for(auto_direction[0], Steering(ALPHA, "relative")))
    print(f"plain: {got_plain!r}\nsteered: {got_steered!r}\ndirect: {direct_plain!r}\ndirect steered: {direct_steered!r}")
    assert got_plain != got_steered
    assert got_plain == direct_plain
    assert got_steered == direct_steered


# --- bad input fails before any model loads -----------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(models, "load", refuse)
    monkeypatch.setattr(llamacpp, "Engine", refuse)


@pytest.fixture
def tiny_file(tmp_path) -> Path:
    return direction.save(tiny_direction(), tmp_path / "tiny.safetensors")


@pytest.mark.parametrize("argv,message", [
    (["export", "--format", "llamacpp-cvec", "--direction", "{tiny}", "--out", "d.gguf"],
     "does not fit embedded (hidden_size: file 64 vs model 576, num_layers: file 4 vs model 30)"),
    (["export", "--format", "llamacpp-cvec", "--direction", "{tiny}", "--out", "d.pt"],
     "--out d.pt: llama.cpp reads control vectors from .gguf files"),
    (["export", "--format", "llamacpp-cvec", "--direction", "{tiny}", "--norm", "unit", "--model", "absent.gguf",
      "--out", "d.gguf"], "--model absent.gguf: no such GGUF file"),
    (["generate", "--backend", "llamacpp", "--direction", "{tiny}", "--out", "s.jsonl"],
     "does not fit embedded (hidden_size: file 64 vs model 576"),
    (["generate", "--backend", "llamacpp", "--model", "HuggingFaceTB/SmolLM2-135M", "--out", "s.jsonl"],
     "--model HuggingFaceTB/SmolLM2-135M: llama.cpp runs GGUF files"),
    (["generate", "--backend", "llamacpp", "--positions", "generated", "--out", "s.jsonl"],
     "--positions generated: llama.cpp control vectors act on every position"),
    (["generate", "--backend", "llamacpp", "--dtype", "bfloat16", "--out", "s.jsonl"],
     "--dtype and --device-map apply to --backend hf"),
])
def test_bad_llamacpp_arguments_fail_before_any_model_loads(argv, message, tiny_file, no_model, tmp_path,
                                                           monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(tiny=tiny_file) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"creative-eval {argv[0]}: error:" in err and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]


@pytest.mark.parametrize("extra,message", [
    (["--direction", "absent.safetensors"], "absent.safetensors: no such direction file"),
    (["--direction", "{tiny}"], "hidden_size: file 64 vs model 576"),
    (["--direction", "{real}", "--alpha", "nan"], "alpha (lambda) must be a finite number"),
    (["--direction", "{real}", "--norm", "huge"], "norm='huge' is not one of"),
])
def test_bad_server_steering_exits_before_the_server_starts(extra, message, tiny_file, auto_direction):
    server_model = pytest.importorskip("llama_cpp.server.model")
    loader = server_model.LlamaProxy.__dict__["load_llama_from_model_settings"]
    extra = [a.format(tiny=tiny_file, real=auto_direction[1]) for a in extra]
    with pytest.raises(SystemExit) as e:
        llamacpp.server_steering(["--model", str(models.embedded_gguf()), *extra])
    assert message in str(e.value)
    assert server_model.LlamaProxy.__dict__["load_llama_from_model_settings"] is loader  # server left unsteered


def test_gguf_shape_check_names_the_fix():
    shape = cvec.gguf_shape(models.embedded_gguf())
    assert shape == cvec.GGUFShape("llama", 576, 30)
    with pytest.raises(DirectionMismatchError, match="creative-eval direction --model embedded"):
        cvec.check_shape(tiny_direction(), shape, "embedded")
