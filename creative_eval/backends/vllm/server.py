"""Serve a model with vLLM's OpenAI-compatible server, every completion steered by a creativity direction.

    python -m creative_eval.backends.vllm.server --direction d.safetensors --alpha 0.2 --port 8000 [vLLM options]
    python -m creative_eval.backends.vllm.server --port 8000    # plain: vLLM's own server of the same model
    python -m creative_eval.backends.vllm.server --help         # its own options, then vLLM's

Run with the project's Python: it checks the direction against the model's config, computes the vector as the
vLLM backend does (`engine.steer_for`), writes it to a file in a new `engine.workspace`, and replaces itself with
vLLM's server (`vllm.entrypoints.openai.api_server`, what `vllm serve` runs) in vLLM's environment
(`engine.python()`), run eager with the steering extension, the file named in `runner.STEER_ENV`: every worker
installs the vector at its first forward (`hook.steer_from_env`). Bad input exits with one line before vLLM
starts. The workspace (a link and the vector) stays in the temporary folder: the server it was made for keeps
no handle that could remove it when it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from creative_eval.backends.vllm.runner import EXTENSION, STEER_ENV  # names only: runner imports nothing heavy
from creative_eval.steering import settings
from creative_eval.usage import HelpFormatter

PROG = "python -m creative_eval.backends.vllm.server"
SERVE = "vllm.entrypoints.openai.api_server"


def options() -> argparse.ArgumentParser:
    """The launcher's own options, as `--help` lists them before vLLM's (which pass through)."""
    p = argparse.ArgumentParser(prog=PROG, add_help=False, allow_abbrev=False, formatter_class=HelpFormatter,
                                description="vLLM's OpenAI-compatible server, optionally steered by a creativity "
                                            "direction. Its own options:")
    p.add_argument("--model", default="embedded", help="what vLLM serves: `embedded` (SmolLM2-135M-Instruct, "
                   "its de-quantised folder), a .gguf file (de-quantised, cached), a folder or a Hugging Face id; "
                   "served under this name unless --served-model-name says otherwise")
    p.add_argument("--direction", default=None, metavar="FILE",
                   help="a direction .safetensors: every completion is steered with it at the direction's layer "
                        "(default: unsteered, vLLM's server as it is)")
    settings.server_strength_args(p)
    p.add_argument("--positions", default="all", metavar="all",
                   help="with --direction: the positions steered; vLLM steers every position, so only all")
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    return p


def print_help() -> None:
    """Our options, and where vLLM's are listed (its `--help` takes seconds: it imports torch and vLLM)."""
    options().print_help()
    print(f"\nAny other option passes through to vLLM's server (--port, --dtype, --max-model-len, --tensor-parallel-"
          f"size, ...); `$CREATIVE_EVAL_VLLM_PYTHON -m {SERVE} --help` (default interpreter: .venv-vllm/bin/python) "
          "lists them.")


def command(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """vLLM's server command line and environment for these arguments; bad input raises with what to fix."""
    ours, rest = options().parse_known_args(list(argv))
    from creative_eval import direction
    from creative_eval.backends.vllm import engine
    from creative_eval.steering.settings import Steering

    interpreter = engine.python()
    source = engine.source_of(ours.model)
    named = any(a.split("=")[0] == "--served-model-name" for a in rest)
    args = ["--model", source, *([] if named else ["--served-model-name", ours.model]), *rest]
    steer = None
    if ours.direction is not None:
        setting = Steering(ours.alpha, ours.norm, ours.positions)
        engine.check_steering(setting)
        steer = engine.steer_for(engine.check_direction(direction.load(ours.direction), source, ours.direction),
                                 setting)
    path = engine.workspace()  # only once the input is good: a refusal leaves nothing behind
    env = {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "INFO")}
    if steer is not None:
        (path / "steer.json").write_text(json.dumps({"index": steer[0], "vector": steer[1]}))
        env[STEER_ENV] = str(path / "steer.json")
        args += ["--worker-extension-cls", EXTENSION, "--enforce-eager"]
    return [interpreter, "-m", SERVE, *args], engine.environ(path, env)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print_help()
        return
    try:
        cmd, env = command(argv)
    except (ValueError, OSError, RuntimeError) as e:  # a bad file or setting, a missing vLLM environment
        raise SystemExit(f"{PROG}: error: {e}") from None
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
