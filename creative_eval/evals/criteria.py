"""The probe's three criteria per layer and direction source, each beside its controls.

Sources: `prompts` (creative minus negated validation prompts), `stories` (creative-prompt minus
negated-prompt unsteered validation stories, response tokens), `humans` (WQ experts' preferred minus
dispreferred paragraphs). Criteria, all on data the direction was not fitted on:
- prompt AUROC: creative vs negated test prompts (prompt tokens);
- story AUROC: creative-prompt vs negated-prompt unsteered test stories, response tokens only, so the
  prompt cannot decide it;
- WQ agreement: share of the 150 expert pairs whose preferred paragraph scores higher (label: writing
  quality); the `humans` direction is scored cross-validated by pair, never on a pair it was fitted on.
Beside each: the percentile among random unit directions at the same layer and among shuffled-label
directions; the robustness and hard sets (AUROC and within-pair rate); the within-pair story rate beside
length (split by which story is longer, and a length-controlled coefficient); the correlation of story scores
with story length; and a TF-IDF + logistic-regression baseline on the same stories.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import stats
from creative_eval.probe import controls, textstates
from creative_eval.probe.textstates import States
from creative_eval.records import HumanLabel, Pair, Story
from creative_eval.sources import calibration, storybank
from creative_eval.steering import generate

SOURCES = ("prompts", "stories", "humans")
CRITERION = "held-out story AUROC (test split, creative- vs negated-prompt unsteered stories, response tokens)"


def _paired_auroc(st: States, vec: torch.Tensor, rand: torch.Tensor, shuffled: torch.Tensor, ids: Sequence[str],
                  n_boot: int) -> dict:
    """AUROC of creative (first half) vs negated (second half) rows, CI over pairs, with its two controls."""
    labels = np.r_[np.ones(len(ids)), np.zeros(len(ids))]
    est = controls.paired_auroc(st.scores(vec).numpy(), n_boot)
    return {**est.to_dict(),
            "random": controls.control("random directions", est.estimate,
                                       controls.auroc_columns(labels, st.scores(rand).numpy())).to_dict(),
            "shuffled": controls.control("shuffled labels", est.estimate,
                                         controls.auroc_columns(labels, st.scores(shuffled).numpy())).to_dict()}


def _within_pair(st: States, vec: torch.Tensor, rand: torch.Tensor) -> dict:
    """Share of pairs whose creative side scores higher (Wilson CI): the fairer statistic for a pair set."""
    n = st.mean.shape[0] // 2
    margin = lambda v: st.scores(v)[:n] - st.scores(v)[n:]  # noqa: E731
    est = stats.proportion_ci(int((margin(vec) > 0).sum()), n, unit="pair")
    null = (margin(rand) > 0).float().mean(0).numpy()
    return {**est.to_dict(), "random": controls.control("random directions", est.estimate, null).to_dict()}


def _story_pairs(st: States, vec: torch.Tensor, rand: torch.Tensor, stories: Sequence[Story]) -> dict:
    """Within each test pair, does the creative-prompt story score higher: the rate beside random directions,
    and the same beside length (where the creative story is the longer / the shorter; the length-controlled
    coefficient), so a direction that reads length is seen as one."""
    n = len(stories) // 2
    scores = st.scores(vec)
    margins = (scores[:n] - scores[n:]).numpy()
    return {**_within_pair(st, vec, rand), **calibration.length_checks(margins, stories[:n], stories[n:])}


def _wq(good: States, bad: States, vec: torch.Tensor, rand: torch.Tensor, shuffled: torch.Tensor) -> dict:
    """Agreement of a direction not fitted on WQ, with its controls."""
    margins = ((good.unit - bad.unit) @ vec).numpy()
    est = stats.proportion_ci(int((margins > 0).sum()), len(margins), unit="pair")
    agree = lambda m: ((good.unit - bad.unit) @ m.T > 0).float().mean(0).numpy()  # noqa: E731
    return {**est.to_dict(), "cross_validated": False,
            "random": controls.control("random directions", est.estimate, agree(rand)).to_dict(),
            "shuffled": controls.control("shuffled labels", est.estimate, agree(shuffled)).to_dict()}


def _wq_cv(good: States, bad: States, k: int, n_random: int, fitting: calibration.Fitting, groups: np.ndarray) -> dict:
    """Cross-validated by groups of pairs that share a text, with its controls."""
    cv = calibration.cross_validate(good, bad, k=k, fit_fn=fitting, groups=groups)
    est = cv.agreement()
    rand, shuffled = calibration.cv_controls(est.estimate, good, bad, k=k, n=n_random, fitting=fitting, groups=groups)
    return {**est.to_dict(), "cross_validated": True, "folds": k, "fit": fitting.name, "groups": int(len(set(groups))),
            "random": rand.to_dict(), "shuffled": shuffled.to_dict()}


def crossfit_scores(st: States, k: int, signs: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Probe scores of paired stories (creative first half, negated second) where each pair is scored by the
    mean-difference direction of the other folds' pairs only; `signs` (+-1 per pair) shuffles the fit's labels."""
    n = st.mean.shape[0] // 2
    diffs = st.mean[:n] - st.mean[n:]
    if signs is not None:
        diffs = diffs * signs[:, None]
    scores = torch.empty(2 * n)
    for test in calibration.folds(n, k, seed):
        train = np.setdiff1d(np.arange(n), test)
        vec = torch.nn.functional.normalize(diffs[train].mean(0), dim=0)
        rows = torch.as_tensor(np.r_[test, test + n])
        scores[rows] = st.unit[rows] @ vec
    return scores


def _crossfit_auroc(st: States, rand: torch.Tensor, k: int, n_random: int, n_boot: int, seed: int) -> dict:
    """Held-out story AUROC of a direction fitted on the other folds' stories of the same split, with controls."""
    n = st.mean.shape[0] // 2
    labels = np.r_[np.ones(n), np.zeros(n)]
    est = controls.paired_auroc(crossfit_scores(st, k, seed=seed).numpy(), n_boot)
    g = torch.Generator().manual_seed(seed)
    null = [controls.auroc_columns(labels, crossfit_scores(st, k, torch.randint(0, 2, (n,), generator=g) * 2.0 - 1,
                                                           seed)[:, None].numpy())[0] for _ in range(n_random)]
    return {**est.to_dict(), "cross_fitted": k,
            "random": controls.control("random directions", est.estimate,
                                       controls.auroc_columns(labels, st.scores(rand).numpy())).to_dict(),
            "shuffled": controls.control("shuffled labels", est.estimate, np.array(null)).to_dict()}


def story_lexical_baseline(fit: Sequence[Story], held: Sequence[Story]) -> float:
    """TF-IDF + logistic regression trained on the fitting stories' texts: what words alone tell apart."""
    def xy(stories: Sequence[Story]) -> tuple[list[str], list[int]]:
        return [s.text for s in stories], [int(s.condition == storybank.CREATIVE) for s in stories]

    clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=1000))
    clf.fit(*xy(fit))
    x, y = xy(held)
    return float(roc_auc_score(y, clf.predict_proba(x)[:, 1]))


def lexical_crossfit(stories: Sequence[Story], k: int) -> float:
    """The TF-IDF baseline cross-fitted by pair on one split's paired stories (creative half first)."""
    n = len(stories) // 2
    scores = np.empty(2 * n)
    for test in calibration.folds(n, k):
        train = np.setdiff1d(np.arange(n), test)
        rows = list(train) + list(train + n)
        clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=1000))
        clf.fit([stories[i].text for i in rows], [int(i < n) for i in rows])
        held = np.r_[test, test + n]
        scores[held] = clf.predict_proba([stories[i].text for i in held])[:, 1]
    return float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], scores))


def _prompts(pairs: Sequence[Pair]) -> list[str]:
    return [p.creative for p in pairs] + [p.uncreative for p in pairs]


def sweep(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    layers: Sequence[int],
    *,
    validation: Sequence[Pair],
    test: Sequence[Pair],
    robustness: Sequence[Pair],
    hard: Sequence[Pair],
    wq: tuple[list[Story], list[HumanLabel]],
    model_id: str,
    n_boot: int = 1000,
    n_random: int = controls.N_RANDOM,
    folds: int = 5,
    human_fit: calibration.Fitting = calibration.Fitting(),
    fit_pairs: int | None = None,
    story_fit: str = "validation",
    sampling: generate.Sampling = storybank.SAMPLING,
    progress: bool = False,
) -> dict:
    """Every criterion for every (layer, source), and the recommended one by held-out story AUROC. The
    `stories` source is fitted on the stories of the first `fit_pairs` validation pairs (default all), or, with
    `story_fit="crossfit"`, on the test split's own stories cross-fitted by pair (`folds` folds: each pair's
    stories are scored by a direction fitted on the other folds); its other criteria then use the direction
    fitted on all test stories, so its prompt AUROC is on prompts whose stories it was fitted on."""
    if story_fit not in ("validation", "crossfit"):
        raise ValueError(f"story_fit={story_fit!r} is not 'validation' or 'crossfit'")
    layers = sorted(set(layers))

    def read(prompts: list[str], responses: list[str] | None) -> dict[int, States]:
        return textstates.read(model, tokenizer, prompts, responses, layers,
                               tokens="prompt" if responses is None else "response", progress=progress)

    prompt_states = {name: read(_prompts(ps), None)
                     for name, ps in (("validation", validation), ("test", test), ("robustness", robustness),
                                      ("hard", hard))}
    held_stories = storybank.unsteered(model, tokenizer, test, model_id=model_id, sampling=sampling,
                                       progress=progress)
    held_st = read([s.prompt for s in held_stories], [s.text for s in held_stories])
    if story_fit == "crossfit":
        fit_stories, fit_st = held_stories, held_st
    else:
        fit_stories = storybank.unsteered(model, tokenizer, validation[:fit_pairs], model_id=model_id,
                                          sampling=sampling, progress=progress)
        fit_st = read([s.prompt for s in fit_stories], [s.text for s in fit_stories])
    good, bad, items = calibration.preferred_sides(*wq)
    groups = calibration.shared_text_groups(good, bad)
    wq_st = read([s.prompt for s in good + bad], [s.text for s in good + bad])
    nv, ns, nw = len(validation), len(fit_stories) // 2, len(items)
    words = np.array([len(s.text.split()) for s in held_stories])
    rows = []
    for layer in layers:
        rand = controls.random_directions(model.config.hidden_size, n_random, seed=layer)
        w_good, w_bad = wq_st[layer].take(range(nw)), wq_st[layer].take(range(nw, 2 * nw))
        fits = {"prompts": (prompt_states["validation"][layer].mean[:nv], prompt_states["validation"][layer].mean[nv:]),
                "stories": (fit_st[layer].mean[:ns], fit_st[layer].mean[ns:]),
                "humans": (w_good.mean, w_bad.mean)}
        for source, (a, b) in fits.items():
            vec = torch.nn.functional.normalize((a - b).mean(0), dim=0) if source != "humans" \
                else human_fit(w_good, w_bad)
            shuffled = controls.shuffled_directions(a, b, n_random, seed=layer)
            scores = held_st[layer].scores(vec).numpy()
            rows.append({
                "layer": layer, "source": source,
                "prompt_auroc": _paired_auroc(prompt_states["test"][layer], vec, rand, shuffled, [p.id for p in test], n_boot),
                "story_auroc": (_crossfit_auroc(held_st[layer], rand, folds, n_random, n_boot, layer)
                                if source == "stories" and story_fit == "crossfit"
                                else _paired_auroc(held_st[layer], vec, rand, shuffled, [p.id for p in test], n_boot)),
                "story_within_pair": _story_pairs(held_st[layer], vec, rand, held_stories),
                "wq_agreement": (_wq_cv(w_good, w_bad, folds, n_random, human_fit, groups) if source == "humans"
                                 else _wq(w_good, w_bad, vec, rand, shuffled)),
                "robust_auroc": _paired_auroc(prompt_states["robustness"][layer], vec, rand, shuffled,
                                              [p.id for p in robustness], n_boot),
                "hard_auroc": _paired_auroc(prompt_states["hard"][layer], vec, rand, shuffled, [p.id for p in hard], n_boot),
                "hard_within_pair": _within_pair(prompt_states["hard"][layer], vec, rand),
                "story_length_spearman": stats.correlation_ci(scores, words, n_boot=n_boot).to_dict(),
            })
    best = max(rows, key=lambda r: (r["story_auroc"]["estimate"], r["wq_agreement"]["estimate"]))
    return {
        "model": model_id, "layers": layers, "sources": list(SOURCES), "n_random": n_random,
        "n": {"validation_pairs": nv, "test_pairs": len(test), "robustness_pairs": len(robustness),
              "hard_pairs": len(hard), "wq_pairs": nw, "story_fit": story_fit, "story_fit_pairs": ns, "fit_stories": len(fit_stories), "held_stories": len(held_stories)},
        "story_settings": {k: v for k, v in held_stories[0].settings.items() if k != "n_tokens"},
        "lexical_story_auroc": (story_lexical_baseline(fit_stories, held_stories) if story_fit == "validation"
                                else lexical_crossfit(held_stories, folds)),
        "recommended": {"layer": best["layer"], "source": best["source"], "criterion": CRITERION,
                        "story_auroc": best["story_auroc"]["estimate"],
                        "story_auroc_ci": [best["story_auroc"]["ci_low"], best["story_auroc"]["ci_high"]],
                        "random_percentile": best["story_auroc"]["random"]["percentile"]},
        "rows": rows,
    }
