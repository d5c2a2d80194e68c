"""The probe stage: how strongly a text's activations point along a direction (`score`), per-text states read once
(`textstates`), random-direction controls for every probe claim (`controls`) and the probe-score store (`store`)."""

from creative_eval.probe.score import (TOKENS, Probe, ProbeScore, ProbeTrace, check_tokens, cosines, counted,
                                       layer_scores, masked_scores)

__all__ = ["TOKENS", "Probe", "ProbeScore", "ProbeTrace", "check_tokens", "cosines", "counted", "layer_scores",
           "masked_scores"]
