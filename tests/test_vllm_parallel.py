"""The steering in every worker vLLM starts: a tensor-parallel engine (3 ranks, one process each, on this CPU)
steers exactly as HF does. If only one rank added the vector, the ranks' copies of the stream would part and the
next all-reduce would mix them; the log-prob shift would then not be HF's."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from creative_eval import activations, direction, models, steering
from creative_eval.backends import vllm
from creative_eval.steering.settings import Steering

ALPHA = 0.5
PROMPTS = ["Write a short story about a lighthouse keeper.", "Describe a kitchen."]
RANKS = 3  # the embedded model's 9 attention and 3 KV heads split three ways, not two


@pytest.fixture(scope="module")
def tp_engine():
    cores = sorted(os.sched_getaffinity(0))
    bind = "|".join(str(cores[i % len(cores)]) for i in range(RANKS))  # one core per rank, shared when too few
    eng = vllm.Engine(vllm.source_of(models.EMBEDDED), env={"VLLM_CPU_OMP_THREADS_BIND": bind}, max_model_len=512,
                      max_num_seqs=2, tensor_parallel_size=RANKS)
    yield eng
    eng.close()


def test_every_tensor_parallel_rank_steers_and_the_shift_is_hfs(tp_engine, embedded):
    model, tokenizer = embedded
    d, _ = direction.auto(model, tokenizer, models.EMBEDDED)
    workers = tp_engine.info["workers"]
    assert sorted(w["tp_rank"] for w in workers) == list(range(RANKS))
    assert len({w["pid"] for w in workers} | {os.getpid(), tp_engine.info["pid"]}) == RANKS + 2
    batch = activations.encode(tokenizer, PROMPTS)
    rows = [batch.input_ids[i][batch.attention_mask[i].bool()].tolist() for i in range(len(PROMPTS))]
    with torch.inference_mode():
        plain_hf = [torch.log_softmax(model(input_ids=torch.tensor([r])).logits[0, -1].double(), -1) for r in rows]
        with steering.steering(model, steering.Steer.of(d, Steering(ALPHA))):
            steered_hf = [torch.log_softmax(model(input_ids=torch.tensor([r])).logits[0, -1].double(), -1)
                          for r in rows]
    hf_shift = torch.cat(steered_hf).numpy() - torch.cat(plain_hf).numpy()
    tp_engine.steer(None)
    plain = tp_engine.next_logprobs(rows).ravel()
    states = tp_engine.steer(vllm.steer_for(d, Steering(ALPHA)))
    assert [s["index"] for s in states] == [d.layer - 1] * RANKS
    shift = tp_engine.next_logprobs(rows).ravel() - plain
    fired = tp_engine.status()
    tp_engine.steer(None)
    r = float(np.corrcoef(shift, hf_shift)[0, 1])
    print(f"tensor parallel x{RANKS}: Pearson of the log-prob shift with HF's: {r:.6f}, largest difference "
          f"{np.abs(shift - hf_shift).max():.2e}")
    assert all(s["calls"] >= len(PROMPTS) for s in fired)  # the hook ran in every rank's process
    assert r >= 0.999 and np.abs(shift - hf_shift).max() < 0.01
