"""`creative_agreement`: the evaluated model as a judge, against the WQ experts' writing-quality preferences.

One doc per distinct WQ pair (in the nested order of `humans.wq_order`, so `--limit n` is balanced over
sides). The model reads the comparison template in both orders; P(first) in each order comes from the
loglikelihoods of the labels "1" and "2", and the decision is the position-debiased one of the judges
(`judges.base.preference`). Beside the agreement the task reports the ties, the position bias (mean P(first))
and the trivial shorter-wins and longer-wins judges on the same docs, so a length preference cannot pass for
skill. The label is writing quality, close to but not the same as creativity.
"""

from __future__ import annotations

import math
from typing import Any

import datasets
from lm_eval.api.instance import Instance

from creative_eval import activations
from creative_eval.harness.model import SteeredHF
from creative_eval.harness.tasks import ShippedDataTask
from creative_eval.judges import base, templates
from creative_eval.people import agreement, humans

TEMPLATE = "compare-creative"


def load_dataset(seed: int = 0, **_: Any) -> datasets.DatasetDict:
    """`custom_dataset`: the WQ pairs as docs {id, prompt, a, b, choice}; lm-eval's other keywords are ignored."""
    stories, labels = humans.wq_order(int(seed))
    text = {s.id: s for s in stories}
    rows = [{"id": h.item_id, "prompt": text[h.story_a].prompt, "a": text[h.story_a].text, "b": text[h.story_b].text,
             "choice": h.choice} for h in labels]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _p_first(ll_1: float, ll_2: float) -> float:
    """P("1") / (P("1") + P("2")) from two loglikelihoods (a shared prefix of the continuation cancels)."""
    return 1 / (1 + math.exp(ll_2 - ll_1))


class AgreementTask(ShippedDataTask):
    """Four loglikelihood requests per pair: labels 1 and 2, with A shown first and with B shown first."""

    def __init__(self, config: dict | None = None, **kwargs: Any):
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        config["process_results"] = AgreementTask.process_results
        super().__init__(config=config, **kwargs)
        name = str((self.config.metadata or {}).get("template", TEMPLATE))
        (self.template,) = templates.resolve(name, "compare")

    def _context(self, doc: dict, first: str, second: str, **kwargs: Any) -> tuple[str, str]:
        """The prompt in one order, chat-rendered (lm-eval's --apply_chat_template, or the live steered_hf's
        template, as `chat: true` does for generation), and the label delimiter that goes with it."""
        text = self.template.format(prompt=doc["prompt"], first=first, second=second)
        if kwargs.get("apply_chat_template"):
            return kwargs["chat_template"]([{"role": "user", "content": text}]), ""
        live = SteeredHF.live
        if live is not None:
            return activations.render(live.tokenizer, text, None, template=True), ""
        return text, " "

    def construct_requests(self, doc: dict, ctx: str, **kwargs: Any) -> list[Instance]:
        meta = kwargs["metadata"]
        out = []
        for order, (first, second) in enumerate(((doc["a"], doc["b"]), (doc["b"], doc["a"]))):
            context, delimiter = self._context(doc, first, second, **kwargs)
            out += [Instance(request_type="loglikelihood", doc=doc, arguments=(context, delimiter + label),
                             idx=2 * order + k, metadata=meta) for k, label in enumerate(base.LABELS)]
        return out

    def process_results(self, doc: dict, results: list[Any]) -> dict[str, float]:
        (ll_1, _), (ll_2, _), (ll_1_ba, _), (ll_2_ba, _) = results
        p_ab, p_ba = _p_first(ll_1, ll_2), _p_first(ll_1_ba, ll_2_ba)
        decision = base.decide(base.debiased(p_ab, p_ba))
        values = {
            "agreement": float(decision == doc["choice"]),
            "tie_rate": float(decision == "tie"),
            "position_bias": (p_ab + p_ba) / 2,
            "consistency": float((p_ab > 0.5) == (p_ba < 0.5)),
            "shorter_wins_agreement": float(agreement.shorter_wins(doc["a"], doc["b"]) == doc["choice"]),
            "longer_wins_agreement": float(agreement.longer_wins(doc["a"], doc["b"]) == doc["choice"]),
        }
        return {**values, **{f"{k}_ci95_low": v for k, v in values.items()},
                **{f"{k}_ci95_high": v for k, v in values.items()}}
