"""The steering setting and the rule for the paper's three conditions, shared by every backend.

`Steering(alpha, norm, positions)` is validated once, where it is made (a command's arguments, lm-eval's
model_args, a frontier arm), and carried whole to the backend; the layer is the direction's. The conditions:
baseline = negated prompt, plain model; induced = negated prompt, steered; creative = creative prompt, plain.
`story_settings` is what every story records about how it was made, so "unsteered stories record alpha 0" is
written here only.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from creative_eval.records import CONDITIONS, Pair

if TYPE_CHECKING:  # a type only: the setting is checked on the command line before torch loads
    from creative_eval.direction import Direction

POSITIONS = ("all", "prompt", "generated")
NORMS = ("unit", "raw", "relative")
DEFAULT_ALPHA = 0.2  # with norm "relative": |lambda * a| = 0.2 x the mean residual norm at the layer; chosen by `creative-eval steer-sweep` (README)
STEERED = "induced"  # the one condition generated with the direction on


def check_positions(positions: str) -> None:
    if positions not in POSITIONS:
        raise ValueError(f"positions={positions!r} is not one of {POSITIONS}")


def check(alpha: float, norm: str = "unit", positions: str = "all") -> None:
    """Reject bad steering settings before any work starts."""
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"alpha (lambda) must be a finite number, got {alpha!r}")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}")
    check_positions(positions)


def server_strength_args(p: argparse.ArgumentParser) -> None:
    """--alpha and --norm as both steered servers (llama.cpp, vLLM) take them, read as `Steering` later."""
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="with --direction: lambda, the steering "
                   "strength, in the unit of --norm")
    p.add_argument("--norm", default="relative", choices=NORMS, metavar="|".join(NORMS),
                   help="with --direction: relative (lambda x the mean residual norm at the layer), unit (the "
                        "paper's lambda) or raw (lambda x |mean difference|)")


@dataclass(frozen=True)
class Steering:
    """lambda, its unit (`norm`) and the positions it reaches: one object from where it is set to the backend."""

    alpha: float = DEFAULT_ALPHA
    norm: str = "relative"
    positions: str = "all"

    def __post_init__(self) -> None:
        check(self.alpha, self.norm, self.positions)

    def scale(self, direction: Direction) -> float:
        """Length of the injected vector: `unit` = alpha (the paper's lambda), `raw` = alpha * |mean difference|,
        `relative` = alpha * (mean residual norm at the layer), so alpha is a fraction of the stream's size."""
        return self.alpha * {"unit": 1.0, "raw": direction.raw_norm, "relative": direction.resid_norm}[self.norm]

    def record(self, condition: str) -> dict[str, Any]:
        """What a story of `condition` records of this setting: unsteered conditions record alpha 0."""
        return {"alpha": self.alpha if is_steered(condition) else 0.0, "norm": self.norm, "positions": self.positions}


def is_steered(condition: str) -> bool:
    return condition == STEERED


def prompt_of(pair: Pair, condition: str) -> str:
    """The prompt a condition generates from: the creative prompt for `creative`, the negated one otherwise."""
    return pair.creative if condition == "creative" else pair.uncreative


def check_conditions(conditions: Sequence[str]) -> None:
    """Generated stories have the paper's conditions only (people's data may carry any label)."""
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"unknown condition(s) {sorted(unknown)}; choose from {CONDITIONS}")


def story_settings(direction: Direction, condition: str, setting: Steering, *, model_id: str, direction_file: str,
                   **backend: Any) -> dict[str, Any]:
    """What a story of `condition` records about how it was made (all but its own token count); `backend` adds
    what the engine and its decoding settings are."""
    return {"model": model_id, "direction": direction_file, "layer": direction.layer, **setting.record(condition),
            "template": direction.template, **backend}
