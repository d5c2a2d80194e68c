"""lm-eval integration: registration, model_args, parity with lm-eval's `steered`, and the CLI end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from creative_eval import direction as direction_mod
from creative_eval.harness import export
from creative_eval import models
from creative_eval.harness import autoload, model as steered_model
from creative_eval.records import Pair
from creative_eval.steering import Steering

BIN = Path(sys.executable).parent
HAVE_JUDGES = importlib.util.find_spec("creative_eval.judges") is not None
TASKS = ["creative_generate", "creative_probe"] + (["creative_rating", "creative_pairwise"] if HAVE_JUDGES else [])
GEN = "max_gen_toks=12,do_sample=False"


def test_hook_registers_model_and_tasks():
    from lm_eval.api.registry import model_registry
    from lm_eval.tasks import TaskManager

    assert "steered_hf" in model_registry
    assert model_registry.get("steered_hf") is steered_model.SteeredHF
    tm = TaskManager()
    assert {"creative", "creative_generate", "creative_pairwise", "creative_probe", "creative_rating",
            "creative_agreement"} <= set(tm.all_tasks)
    assert Path(tm.task_index["creative_probe"].yaml_path).parent == autoload.task_dir()


def test_arguments_are_cast_and_unknown_ones_rejected():
    assert steered_model._as_layer(-1.0) == -1 and steered_model._as_layer("8") == 8 and steered_model._as_layer(None) is None
    with pytest.raises(ValueError, match="whole number"):
        steered_model._as_layer(2.5)
    assert steered_model._as_bool("probe", "True") is True and steered_model._as_bool("probe", 0) is False
    with pytest.raises(ValueError, match="alpah"):
        steered_model.SteeredHF(alpah=1.0)
    with pytest.raises(ValueError, match="alpha"):
        steered_model.SteeredHF(alpha="nan")
    with pytest.raises(ValueError, match="positions"):
        steered_model.SteeredHF(positions="middle")


@pytest.fixture(scope="session")
def steered_pair(tmp_path_factory):
    """(steered_hf, lm-eval's steered) on the embedded model with the same exported direction."""
    from lm_eval.models.hf_steered import SteeredModel

    model, tokenizer = models.load(models.EMBEDDED)
    d, path = direction_mod.auto(model, tokenizer, models.EMBEDDED)
    pt = export.lm_eval_steered(d, model, Steering(0.5, "relative"), tmp_path_factory.mktemp("export") / "d.pt")
    ours = steered_model.SteeredHF(direction=str(path), alpha=0.5, norm="relative", device="cpu", batch_size=2)
    builtin = SteeredModel(pretrained=models.resolve(models.EMBEDDED), steer_path=str(pt), device="cpu", batch_size=2)
    return ours, builtin


def _requests(kind: str, args: list[tuple]):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=0) for a in args]


def test_parity_with_builtin_steered(steered_pair):
    ours, builtin = steered_pair
    gen = [("Write a story about a lighthouse.", {"until": [], "max_gen_toks": 10, "do_sample": False}),
           ("Describe a quiet kitchen.", {"until": [], "max_gen_toks": 10, "do_sample": False})]
    ll = [("The cat sat on the", " mat."), ("Once upon a time", " there was a dragon.")]
    assert ours.generate_until(_requests("generate_until", gen)) == builtin.generate_until(_requests("generate_until", gen))
    a, b = ours.loglikelihood(_requests("loglikelihood", ll)), builtin.loglikelihood(_requests("loglikelihood", ll))
    assert [x[0] for x in a] == [x[0] for x in b]
    plain = ours.generate_until(_requests("generate_until", [(c, {**k, "steer": False}) for c, k in gen]))
    assert plain != ours.generate_until(_requests("generate_until", gen)), "steer=false must turn steering off"


def test_direction_for_another_model_is_refused(tiny, tmp_path):
    model, tokenizer = tiny
    pairs = [Pair(id=f"p{i}", creative=f"A wild tale number {i}.", uncreative=f"A plain note number {i}.", split="validation") for i in range(3)]
    path = direction_mod.save(direction_mod.extract(model, tokenizer, pairs, 2, model_id="tiny"), tmp_path / "d.safetensors")
    with pytest.raises(direction_mod.DirectionMismatchError, match="tiny"):
        steered_model.SteeredHF(direction=str(path), device="cpu")


def test_export_refuses_other_extension(steered_pair, tmp_path):
    ours, _ = steered_pair
    with pytest.raises(ValueError, match=r"\.pt"):
        export.lm_eval_steered(ours.direction, ours.model, Steering(0.5, "relative"), tmp_path / "d.safetensors")
    pt = export.lm_eval_steered(ours.direction, ours.model, Steering(2.0, "unit"), tmp_path / "d.pt")
    entry = torch.load(pt, weights_only=False)[f"layers.{ours.direction.layer - 1}"]
    assert entry["action"] == "add" and entry["steering_coefficient"] == 2.0


@pytest.fixture(scope="session")
def lm_eval_run(tmp_path_factory):
    """One `lm_eval --model steered_hf` subprocess over the creative tasks (all model_args defaulted)."""
    out = tmp_path_factory.mktemp("lm_eval")
    cmd = [str(BIN / "lm_eval"), "--model", "steered_hf", "--tasks", ",".join(TASKS), "--limit", "2",
           "--gen_kwargs", GEN, "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_lm_eval_cli_results_have_finite_metrics_and_cis(lm_eval_run):
    out, _ = lm_eval_run
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    metrics = {"creative_generate": ["words"], "creative_probe": ["probe"], "creative_rating": ["rating"],
               "creative_pairwise": ["win_rate", "tie_rate", "consistency"]}
    for task in TASKS:
        r = results[task]
        for m in metrics[task]:
            value, low, high = r[f"{m},none"], r[f"{m}_ci95_low,none"], r[f"{m}_ci95_high,none"]
            stderr = r[f"{m}_stderr,none"]
            assert all(math.isfinite(v) for v in (value, low, high, stderr)), (task, m, r)
            assert low <= value <= high, (task, m, low, value, high)


def test_lm_eval_results_name_the_steering_the_device_and_the_judge(lm_eval_run):
    out, _ = lm_eval_run
    doc = json.loads(next(out.rglob("results_*.json")).read_text())
    steered = doc["config"]["steered_hf"]
    assert steered["model"] == "embedded" and steered["alpha"] == 0.2 and steered["layer"] == 17
    assert steered["direction"].endswith(".safetensors") and steered["device_used"] == "cpu"
    for task in ("creative_rating", "creative_pairwise"):
        assert doc["configs"][task]["metadata"]["judge"] == "embedded"


def test_lm_eval_output_shows_judging_loads_the_model_once_and_repeats_no_task_warning(lm_eval_run):
    """The judge (same model, same dtype) judges on the evaluated weights: one load; its bar shows the judging
    after generation; lm-eval's per-task `--metadata` warning is not printed for every task."""
    _, proc = lm_eval_run
    assert len(re.findall(r"Loading weights:\s+0%", proc.stderr)) == 1, proc.stderr[-3000:]  # each load's bar starts once
    assert "Custom kwargs can be passed" not in proc.stderr
    assert "embedded: 100%" in proc.stderr and "prompt/s" in proc.stderr


def test_lm_eval_cli_logs_per_sample_judgements(lm_eval_run):
    out, _ = lm_eval_run
    sample = json.loads(next(out.rglob("samples_creative_probe_*.jsonl")).read_text().splitlines()[0])
    judged = json.loads(sample["filtered_resps"][0])
    assert isinstance(judged["probe"], float) and judged["status"] == "ok" and isinstance(judged["story"], str)


def test_passthrough_rejects_bad_model_args_before_generating():
    proc = subprocess.run(
        [str(BIN / "creative-eval"), "lm-eval", "--model", "steered_hf", "--model_args", "alpah=3",
         "--tasks", "creative_generate", "--limit", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "unknown model_args ['alpah']" in proc.stderr and "Running generate_until" not in proc.stderr


def _task_config(**meta) -> dict:
    from creative_eval.harness import tasks as t

    return {"task": "creative_test", "class": t.CreativeTask, "custom_dataset": t.load_dataset, "test_split": "test",
            "output_type": "generate_until", "doc_to_text": t.negated_prompt, "doc_to_target": "",
            "generation_kwargs": {"chat": True}, "metadata": {"version": 1.0, **meta}}


def test_task_options_are_checked_when_built():
    from creative_eval.harness.tasks import CreativeTask

    with pytest.raises(ValueError, match="measure='vibes'"):
        CreativeTask(config=_task_config(measure="vibes"))


@pytest.mark.skipif(not HAVE_JUDGES, reason="needs creative_eval.judges")
def test_pairwise_asks_for_an_unsteered_baseline_and_missing_judge_is_refused():
    from creative_eval.harness.tasks import CreativeTask

    with pytest.raises(Exception, match="no-such-judge"):
        CreativeTask(config=_task_config(measure="pairwise", judge="no-such-judge"))
    task = CreativeTask(config=_task_config(measure="pairwise"))
    doc = task.test_docs()[0]
    steered, baseline = task.construct_requests(doc, "ctx", metadata=("creative_test", 0, 1))
    assert steered.args[1].get("steer", True) is True and baseline.args[1]["steer"] is False and baseline.idx == 1
