"""The layer sweep: probe AUROC per layer on held-out pairs beside a lexical baseline. Lambda is chosen on the
steering frontier (`frontier`), by judges other than the steering direction and against a random direction."""

from __future__ import annotations

from typing import Sequence

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import direction, models, probe, stats
from creative_eval.records import Pair


def layer_sweep(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    validation: Sequence[Pair],
    test: Sequence[Pair],
    robustness: Sequence[Pair],
    hard: Sequence[Pair] = (),
    *,
    model_id: str,
    pairs_hash: str = "",
    pooling: str = "mean",
    template: bool = True,
    n_boot: int = 1000,
    progress: bool = False,
) -> dict:
    """Directions from `validation` at every layer (one pass), the probe's prompt-level AUROC on `test`
    (bootstrap over pairs) and on `robustness` and `hard` (there also the within-pair rate: the share of pairs
    whose creative side scores higher, Wilson CI), beside a TF-IDF + logistic-regression baseline."""
    layers = list(range(1, models.num_layers(model) + 1))
    dirs = direction.extract(model, tokenizer, validation, layers, model_id=model_id, pairs_hash=pairs_hash,
                             pooling=pooling, template=template, progress=progress)
    rows, robust, hard_rows = [], {}, {}
    for name, pairs in (("test", test), ("robustness", robustness), ("hard", hard)):
        if not pairs:
            continue
        prompts = [p.creative for p in pairs] + [p.uncreative for p in pairs]
        labels = [1] * len(pairs) + [0] * len(pairs)
        clusters = [p.id for p in pairs] * 2
        scores = probe.layer_scores(model, tokenizer, prompts, dirs, template=template)
        for layer in tqdm(layers, disable=not progress, desc=f"AUROC {name}"):
            est = stats.auroc_ci(labels, scores[layer], clusters=clusters, n_boot=n_boot, unit="pair")
            if name == "hard":
                n = len(pairs)
                wins = sum(c > u for c, u in zip(scores[layer][:n], scores[layer][n:]))
                hard_rows[layer] = {"hard_auroc": est.estimate, "hard_ci": [est.ci_low, est.ci_high],
                                    "hard_within_pair": stats.proportion_ci(wins, n, unit="pair").to_dict()}
            elif name == "test":
                rows.append({"layer": layer, "auroc": est.estimate, "ci_low": est.ci_low, "ci_high": est.ci_high,
                             "n_pairs": est.n, "raw_norm": dirs[layer].raw_norm})
            else:
                robust[layer] = est
    for row in rows:
        row["robust_auroc"] = robust[row["layer"]].estimate
        row.update(hard_rows.get(row["layer"], {}))
    best = max(rows, key=lambda r: (r["auroc"], r["robust_auroc"]))
    return {
        "model": model_id, "pooling": pooling, "template": template,
        "n_validation": len(validation), "n_test": len(test), "n_robustness": len(robustness),
        "best_layer": best["layer"], "best_auroc": best["auroc"], "best_ci": [best["ci_low"], best["ci_high"]],
        "robust_auroc": best["robust_auroc"],
        "robust_ci": [robust[best["layer"]].ci_low, robust[best["layer"]].ci_high],
        "lexical_baseline": {**lexical_baseline(validation, test, robustness),
                             **({"hard_auroc": lexical_baseline(validation, test, hard)["robust_auroc"]} if hard else {})},
        "n_hard": len(hard), **{k: v for k, v in hard_rows.get(best["layer"], {}).items()},
        "layers": rows,
    }


def lexical_baseline(validation: Sequence[Pair], test: Sequence[Pair], robustness: Sequence[Pair]) -> dict[str, float]:
    """TF-IDF + logistic regression trained on the validation prompts: what words alone achieve."""
    def xy(pairs: Sequence[Pair]) -> tuple[list[str], list[int]]:
        return [p.creative for p in pairs] + [p.uncreative for p in pairs], [1] * len(pairs) + [0] * len(pairs)

    clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=1000))
    clf.fit(*xy(validation))
    out = {}
    for name, pairs in (("test_auroc", test), ("robust_auroc", robustness)):
        x, y = xy(pairs)
        out[name] = float(roc_auc_score(y, clf.predict_proba(x)[:, 1]))
    return out
