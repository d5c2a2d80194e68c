"""CI checks: `PATH OP NUMBER`, PATH a dotted path into summary.json (`pairwise.<judge>.win_rate.ci_low>=0.5`,
`ratings.<judge>.conditions.induced.estimate>3`), OP one of >= <= > < == !=. A missing or NaN value fails."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, Iterable


@dataclass
class Check:
    """One CI check and its outcome; `value` is None when the path is missing or NaN."""

    expr: str
    path: str
    op: str
    threshold: float
    value: float | None = None
    passed: bool = False
    error: str = ""


_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
        "!=": operator.ne}
_CHECK = re.compile(r"^\s*(?P<path>[^<>=!\s]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")


def parse_check(expr: str) -> Check:
    """`PATH OP NUMBER` -> Check; a malformed expression is an error naming the expected syntax."""
    m = _CHECK.match(expr)
    if not m:
        raise ValueError(f"check {expr!r} is not PATH OP NUMBER, e.g. 'pairwise.self.win_rate.ci_low>=0.5' "
                         f"(OP one of {' '.join(_OPS)})")
    return Check(expr, m["path"], m["op"], float(m["num"]))


def _resolve(summary: dict[str, Any], path: str) -> Any:
    """Follow a dotted path; a key may itself contain dots (judge names), so the longest matching key wins."""
    node, parts = summary, path.split(".")
    while parts:
        if not isinstance(node, dict):
            raise KeyError(f"{'.'.join(parts)!r} goes below a number")
        for j in range(len(parts), 0, -1):
            key = ".".join(parts[:j])
            if key in node:
                node, parts = node[key], parts[j:]
                break
        else:
            raise KeyError(f"no {parts[0]!r} here; choose from {sorted(node)}")
    return node


def run_checks(summary: dict[str, Any], exprs: Iterable[str]) -> list[Check]:
    """Evaluate every check; a missing or non-numeric value fails with the reason in `error`."""
    out = []
    for expr in exprs:
        c = parse_check(expr)
        try:
            value = _resolve(summary, c.path)
        except KeyError as e:
            c.error = f"{c.path}: {e.args[0]}"
        else:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                c.value, c.passed = float(value), _OPS[c.op](float(value), c.threshold)
            else:
                c.error = f"{c.path} is {'missing or NaN' if value is None else 'not a number'}"
        out.append(c)
    return out


def check_rows(checks: list[Check]) -> tuple[list[str], list[list[str]]]:
    rows = [["✅ pass" if c.passed else "❌ fail", f"`{c.expr}`", "–" if c.value is None else f"{c.value:.4g}",
             c.error] for c in checks]
    return ["result", "check", "value", "note"], rows
