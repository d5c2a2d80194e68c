"""The probe's criteria sweep and its controls as Markdown: every number beside its random-direction percentile."""

from __future__ import annotations

from typing import Any

from creative_eval.report.render import fmt_estimate, markdown_table


def with_control(e: dict[str, Any]) -> str:
    """`0.65 [0.57, 0.73] r97 s88`: estimate, CI, percentile among random (r) and shuffled-label (s) directions."""
    parts = [fmt_estimate(e)]
    for key, tag in (("random", "r"), ("shuffled", "s")):
        if e.get(key):
            parts.append(f"{tag}{100 * e[key]['percentile']:.0f}")
    return " ".join(parts)


def beside_length(e: dict[str, Any]) -> str:
    """`0.60 [0.50, 0.69] r99; longer 0.70 (n=40) / shorter 0.52 (n=50); coef. +0.81 [+0.30, +1.32]`."""
    lc = e["length_logit"]
    coef = (f"coef. {lc['coef']:+.2f} [{lc['ci_low']:+.2f}, {lc['ci_high']:+.2f}]" if lc["coef"] is not None
            else "coef. not fitted")
    side = lambda k: f"{fmt_estimate(e[k])} (n={e[k]['n']})"  # noqa: E731
    return (f"{with_control(e)}; longer {side('agree_when_longer_chosen')} / shorter "
            f"{side('agree_when_shorter_chosen')}; {coef}")


def criteria_table(result: dict[str, Any]) -> str:
    """One row per (layer, source) with the three criteria, the robustness and hard sets, and the length link."""
    header = ["layer", "source", "prompt AUROC", "story AUROC (response tokens)", "WQ agreement (writing quality)",
              "robustness AUROC", "hard AUROC", "hard within-pair", "story within-pair, beside length",
              "ρ(score, words)"]
    rows = [[str(r["layer"]), r["source"], with_control(r["prompt_auroc"]), with_control(r["story_auroc"]),
             with_control(r["wq_agreement"]) + (" cv" if r["wq_agreement"].get("cross_validated") else ""),
             with_control(r["robust_auroc"]), with_control(r["hard_auroc"]), with_control(r["hard_within_pair"]),
             beside_length(r["story_within_pair"]), fmt_estimate(r["story_length_spearman"])]
            for r in result["rows"]]
    n, rec = result["n"], result["recommended"]
    notes = (
        f"n: {n['test_pairs']} test pairs (prompt AUROC; {n['held_stories']} unsteered test stories, story AUROC), "
        f"{n['wq_pairs']} WQ expert pairs (label: writing quality; `cv` = {result['rows'][-1]['wq_agreement'].get('folds', 5)}"
        f"-fold cross-validated over {result['rows'][-1]['wq_agreement'].get('groups')} groups of pairs that share a "
        f"text: the humans direction is never scored on a pair, or a text, it was fitted on), "
        f"{n['robustness_pairs']} robustness and {n['hard_pairs']} hard pairs. 95% CIs (bootstrap over pairs for "
        f"AUROC, Wilson for rates). rNN / sNN: percentile among {result['n_random']} random unit directions at the "
        f"same layer / {result['n_random']} shuffled-label directions. Words alone (TF-IDF + logistic regression "
        f"on the same fitting stories): story AUROC {result['lexical_story_auroc']:.3f}. Story within-pair: share "
        f"of test pairs whose creative-prompt story scores higher, then that share where it is the longer / the "
        f"shorter story (words), and the score margin's coefficient per SD beside log word ratio (logistic). "
        + (f"The stories source is fitted on the stories of {n['story_fit_pairs']} of the {n['validation_pairs']} "
           f"validation pairs; the prompts source on all {n['validation_pairs']}.\n\n"
           if n.get("story_fit", "validation") == "validation" else
           "The stories source's story AUROC is cross-fitted by pair on the test stories (each pair scored by a "
           "direction fitted on the other folds; shuffled = the same cross-fitting with coin-flipped labels); its "
           "other columns use the direction fitted on all test stories.\n\n")
        + f"Recommended: layer {rec['layer']}, source `{rec['source']}` on the {rec['criterion']}: "
        f"{rec['story_auroc']:.3f} [{rec['story_auroc_ci'][0]:.3f}, {rec['story_auroc_ci'][1]:.3f}], above "
        f"{100 * rec['random_percentile']:.0f}% of random directions."
    )
    return f"{markdown_table(header, rows)}\n\n{notes}"
