"""The `creative` lm-eval tasks: data from the shipped pairs, batched judging, metrics with 95% CIs.

One Task class serves every YAML in `harness/task_files/`; `metadata.measure` picks what is judged (none, probe, rating,
pairwise). Options are checked when the task is built, before any generation. The judge or probe runs once
over all of a task's responses in `apply_filters` (one model per process, never one load per sample), and
each sample's judgement is what `process_results` returns, so `--log_samples` keeps it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import datasets
from lm_eval.api.instance import Instance
from lm_eval.api.task import ConfigurableTask

from creative_eval import judges, models, pairs, sources, stats
from creative_eval.harness.model import Live, SteeredHF
from creative_eval.judges import PairItem
from creative_eval.records import Story

MEASURES = ("none", "probe", "rating", "pairwise")
JUDGE_ENV = "CREATIVE_EVAL_JUDGE"
BASELINE = "baseline"


def load_dataset(pairs_file: str = pairs.SHIPPED, split: str = "test", **_: Any) -> datasets.DatasetDict:
    """`custom_dataset`: lm-eval passes task metadata (and model_args) as keywords; only ours are read."""
    rows = [dataclasses.asdict(p) for p in pairs.load_pairs(pairs_file, split)]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def negated_prompt(doc: dict) -> str:
    return doc["uncreative"]


def creative_prompt(doc: dict) -> str:
    return doc["creative"]


def ci95_low(items: Sequence[float]) -> float:
    return stats.sample_ci(items).ci_low


def ci95_high(items: Sequence[float]) -> float:
    return stats.sample_ci(items).ci_high


def p_ci95_low(items: Sequence[float]) -> float:
    """ci95_low of a mean probability: the interval stays inside [0, 1]."""
    return stats.sample_ci(items, (0, 1)).ci_low


def p_ci95_high(items: Sequence[float]) -> float:
    return stats.sample_ci(items, (0, 1)).ci_high


def _judge_preset(meta: dict) -> str:
    return str(meta.get("judge") or os.environ.get(JUDGE_ENV) or "embedded")


class ShippedDataTask(ConfigurableTask):
    """A task whose docs come from the project's own data (`custom_dataset`), read without lm-eval's warning, once
    per task, that such tasks take their options from `--metadata`: these do, and say so in their README."""

    def download(self, dataset_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.dataset = self.config.custom_dataset(**(self.config.metadata or {}), **(self.config.dataset_kwargs or {}))


class CreativeTask(ShippedDataTask):
    """A ConfigurableTask whose `metadata.measure` adds a batched judgement step."""

    def __init__(self, config: dict | None = None, **kwargs: Any):
        config = {k: v for k, v in (config or {}).items() if k != "class"}  # TaskConfig has no such field
        # our metrics are computed here, not looked up in lm-eval's metric registry (or HF evaluate)
        config["process_results"] = CreativeTask.process_results
        super().__init__(config=config, **kwargs)
        meta = self.config.metadata or {}
        self.measure = str(meta.get("measure", "none"))
        if self.measure not in MEASURES:
            raise ValueError(f"{self.config.task}: metadata.measure={self.measure!r} is not one of {MEASURES}")
        self.judge = self._load_judge(meta) if self.measure in ("rating", "pairwise") else None
        if self.judge is not None:  # the results name who judged, also when the default judge did
            self.config.metadata = {**meta, "judge": self.judge.id}
        self.probe = probe_preset(self.config.task, meta) if self.measure == "probe" else None
        if self.probe is not None:
            self.config.metadata = {**meta, "probe": self.probe["id"]}

    def _load_judge(self, meta: dict):
        """The judge preset, on the evaluated model's own weights when it names that model in that dtype (one
        copy in memory, not two; judging runs after generation, with the steering off)."""
        cfg = judges.presets.load(_judge_preset(meta))
        live = SteeredHF.live
        same = (live is not None and cfg["backend"] == "hf" and cfg.get("model", models.EMBEDDED) == live.model_id
                and models.dtype_of(cfg.get("dtype")) == next(live.model.parameters()).dtype)
        return _shown(judges.load_judge(cfg, live.model, live.tokenizer) if same else judges.load_judge(cfg))

    def construct_requests(self, doc: dict, ctx: str, **kwargs: Any) -> list[Instance] | Instance:
        """Pairwise tasks also ask the same model, steering off, for the baseline story (idx 1)."""
        steered = super().construct_requests(doc, ctx, **kwargs)
        if self.measure != "pairwise":
            return steered
        ctx_, gen_kwargs, *rest = steered.arguments
        baseline = dataclasses.replace(steered, arguments=(ctx_, {**gen_kwargs, "steer": False}, *rest), idx=1,
                                       resps=[], filtered_resps={})
        return [steered, baseline]

    def apply_filters(self) -> None:
        super().apply_filters()
        by_doc: dict[int, dict[int, Instance]] = {}
        for inst in self._instances:
            by_doc.setdefault(inst.doc_id, {})[inst.idx] = inst
        docs = [by_doc[k] for k in sorted(by_doc)]
        if self.measure == "none":
            return
        judged = getattr(self, f"_judge_{self.measure}")(docs)
        for group, result in zip(docs, judged):
            for inst in group.values():
                for key in inst.filtered_resps:
                    inst.filtered_resps[key] = json.dumps(result)  # JSON, so --log_samples stays machine-readable

    def _stories(self, docs: list[dict[int, Instance]], idx: int = 0, condition: str = "induced") -> list[Story]:
        out = []
        for group in docs:
            inst = group[idx]
            text = next(iter(inst.filtered_resps.values()))
            out.append(Story(prompt_id=inst.doc["id"], condition=condition, prompt=self.doc_to_text(inst.doc), text=text))
        return out

    def _judge_probe(self, docs: list[dict[int, Instance]]) -> list[dict]:
        stories = self._stories(docs)
        ratings = _probe_judge(self.config.metadata or {}, self.probe).rate(stories)
        return [{"story": s.text, "probe": r.score, **dataclasses.asdict(r)} for s, r in zip(stories, ratings)]

    def _judge_rating(self, docs: list[dict[int, Instance]]) -> list[dict]:
        stories = self._stories(docs)
        ratings = self.judge.rate(stories)
        return [{"story": s.text, **dataclasses.asdict(r)} for s, r in zip(stories, ratings)]

    def _judge_pairwise(self, docs: list[dict[int, Instance]]) -> list[dict]:
        steered, baseline = self._stories(docs), self._stories(docs, idx=1, condition=BASELINE)
        prefs = self.judge.compare([PairItem(s, b) for s, b in zip(steered, baseline)])
        return [{"story": s.text, "baseline": b.text, **dataclasses.asdict(p)}
                for s, b, p in zip(steered, baseline, prefs)]

    def process_results(self, doc: dict, results: list[Any]) -> dict[str, Any]:
        if self.measure == "none":
            n = float(len(results[0].split()))
            return {"words": n, "words_ci95_low": n, "words_ci95_high": n}
        result = json.loads(results[0])
        value = {"probe": _value(result, "probe"), "rating": _value(result, "expected")}.get(self.measure)
        if value is not None:
            return {self.measure: value, f"{self.measure}_ci95_low": value, f"{self.measure}_ci95_high": value}
        return _pairwise_metrics(result)


def _value(result: dict, key: str) -> float:
    v = result.get(key)
    return float("nan") if v is None or result.get("status", "ok") != "ok" else float(v)


def _pairwise_metrics(pref: dict) -> dict[str, float]:
    """Per pair: did the steered story (shown as A) win (position-debiased decision), tie, were both orders
    consistent, and the judge's position bias (mean P(first shown) over both orders; NaN for the probe)."""
    ok = pref.get("status", "ok") == "ok" and pref.get("decision") is not None
    nan = float("nan")
    both = ok and pref.get("p_first_ab") is not None and pref.get("p_first_ba") is not None
    out = {
        "win_rate": float(pref["decision"] == "A") if ok else nan,
        "tie_rate": float(pref["decision"] == "tie") if ok else nan,
        "consistency": float(bool(pref["consistent"])) if ok else nan,
        "position_bias": (pref["p_first_ab"] + pref["p_first_ba"]) / 2 if both else nan,
    }
    return {**out, **{f"{k}_ci95_low": v for k, v in out.items()}, **{f"{k}_ci95_high": v for k, v in out.items()}}


_PROBE_JUDGES: dict[tuple, Any] = {}


def probe_preset(task: str, meta: dict) -> dict | None:
    """`metadata.probe`: a probe judge preset (e.g. probe-humans) that scores the stories with its own direction
    in place of the run's; read and checked when the task is built."""
    if not meta.get("probe"):
        return None
    cfg = judges.presets.load(str(meta["probe"]))
    if cfg["backend"] != "probe":
        raise ValueError(f"{task}: metadata.probe={meta['probe']!r} is a {cfg['backend']} judge, not a probe; name a "
                         "probe preset, e.g. probe-humans, or use creative_rating for this judge")
    return cfg


def _probe_judge(meta: dict, preset: dict | None = None):
    """The probe judge. With a `preset`, that preset's probe (its own direction), on the evaluated model's weights
    when it names that model. Else on the evaluated model and its direction when a steered_hf or steered_vllm
    lives in this process (`Live`: steered_hf's own model, no second load), else on the model named in metadata
    (`pretrained`, default embedded) with `direction` (default auto) at `layer`."""
    live = Live.last
    if preset is not None and live is not None and preset.get("model", models.EMBEDDED) == live.model_id:
        return _shown(judges.load_judge(preset, *live.probe_inputs()[:2]))
    if preset is not None:
        key = ("preset", preset["id"])
        if key not in _PROBE_JUDGES:
            _PROBE_JUDGES[key] = _shown(judges.load_judge(preset))
        return _PROBE_JUDGES[key]
    if live is not None:
        return _shown(judges.load_judge("probe", *live.probe_inputs()))
    name = str(meta.get("pretrained") or models.EMBEDDED)
    key = (name, str(meta.get("direction", "auto")), meta.get("layer"))
    if key not in _PROBE_JUDGES:
        model, tokenizer = models.load(name)
        d, _ = sources.resolve(key[1], model, tokenizer, name, key[2])
        _PROBE_JUDGES[key] = _shown(judges.load_judge("probe", model, tokenizer, d))
    return _PROBE_JUDGES[key]


def _shown(judge):
    """A judge that shows its progress: a task judges all its responses in one call, after generation."""
    judge.progress = True
    return judge
