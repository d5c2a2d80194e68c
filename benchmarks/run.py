"""`make bench`: run every benchmarks/bench_*.py `run()` side by side and print one JSON object of ratios last."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def main() -> int:
    ratios: dict[str, float] = {}
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        print(f"== {path.stem}", file=sys.stderr)
        ratios.update(module.run())
    print(json.dumps({k: round(v, 3) for k, v in ratios.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
