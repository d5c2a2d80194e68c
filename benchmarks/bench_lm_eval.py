"""steered_hf vs lm-eval's built-in `steered` on the same direction: throughput ratio (goal >= 1.0)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lm_eval.api.instance import Instance
from lm_eval.models.hf_steered import SteeredModel

from creative_eval import direction, models
from creative_eval.harness import export
from creative_eval.harness import model as steered_model
from creative_eval.steering import Steering

PROMPTS = ["Write a story about a lighthouse.", "Describe a quiet kitchen.", "A letter from a dragon.",
           "The minutes of a council meeting."]
ROUNDS = 5


def _work(lm) -> float:
    gen = [Instance("generate_until", {}, (p, {"until": [], "max_gen_toks": 24, "do_sample": False}), 0) for p in PROMPTS]
    ll = [Instance("loglikelihood", {}, (p, " Once upon a time."), 0) for p in PROMPTS]
    start = time.perf_counter()
    lm.generate_until(gen, disable_tqdm=True)
    lm.loglikelihood(ll, disable_tqdm=True)
    return time.perf_counter() - start


def run() -> dict[str, float]:
    model, tokenizer = models.load(models.EMBEDDED)
    d, path = direction.auto(model, tokenizer, models.EMBEDDED)
    with tempfile.TemporaryDirectory() as tmp:
        pt = export.lm_eval_steered(d, model, Steering(0.5, "relative"), Path(tmp) / "d.pt")
        ours = steered_model.SteeredHF(direction=str(path), alpha=0.5, device="cpu", batch_size=4)
        builtin = SteeredModel(pretrained=models.resolve(models.EMBEDDED), steer_path=str(pt), device="cpu", batch_size=4)
    _work(ours), _work(builtin)  # warm-up
    t_ours, t_builtin = [], []
    for _ in range(ROUNDS):  # interleaved, best of ROUNDS: other load on the machine hits both alike
        t_ours.append(_work(ours))
        t_builtin.append(_work(builtin))
    return {"steered_hf_vs_builtin": min(t_builtin) / min(t_ours)}
