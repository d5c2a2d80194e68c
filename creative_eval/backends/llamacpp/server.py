"""Serve a GGUF model (default: the embedded one) as an OpenAI-compatible API with llama-cpp-python's server.

    python -m creative_eval.backends.llamacpp.server --port 8000 --n_threads 2   # foreground; any server option
    python -m creative_eval.backends.llamacpp.server --direction d.safetensors --alpha 0.2   # steered (engine.py)
    with LocalServer() as srv:                                               # background, stopped on exit
        judge = OpenAIJudge("local", "embedded", base_url=srv.base_url)

Weights are loaded without llama.cpp's extra buffer types (weight repacking): on machines that report AMX
but cannot run its tile instructions (some VMs and sandboxes), the repacked AMX kernels kill the server with
SIGILL on its first request. The server has no option for this, so the launcher sets `use_extra_bufts=False`
on llama.cpp's default model parameters before starting it; pass `--extra_bufts` to keep them."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Sequence


class LocalServerError(RuntimeError):
    """The server could not start; the message carries the end of its log."""


def free_port() -> int:
    """A loopback port free right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_extra_bufts() -> None:
    """Make every model load skip the extra buffer types (see the module docstring)."""
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params

    def params():  # the server builds Llama(...) which asks this function for its starting parameters
        p = default()
        p.use_extra_bufts = False
        return p

    lib.llama_model_default_params = params


def main(argv: Sequence[str] | None = None) -> None:
    """llama_cpp.server's command line (same options), `--model` defaulting to the embedded GGUF."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--extra_bufts" in args:
        args.remove("--extra_bufts")
    else:
        _no_extra_bufts()
    if "--model" not in args:
        from creative_eval.models import embedded_gguf

        args = ["--model", str(embedded_gguf()), *args]
    if any(a.split("=")[0] == "--direction" for a in args):  # steered completions; imports torch, so only then
        from creative_eval.backends.llamacpp.engine import server_steering

        args = server_steering(args)
    from llama_cpp.server.__main__ import main as server_main

    sys.argv = ["llama_cpp.server", *args]
    server_main()


class LocalServer:
    """A llama.cpp server in a child process on loopback; `base_url` is ready for OpenAIJudge once started."""

    def __init__(self, model: str | Path | None = None, *, port: int | None = None, n_ctx: int = 2048,
                 n_threads: int = 1, extra_args: Sequence[str] = (), timeout_s: float = 120.0):
        if model is None:
            from creative_eval.models import embedded_gguf

            model = embedded_gguf()
        self.model, self.port = str(model), port or free_port()
        self.args = ["--model", self.model, "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx),
                     "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads), *extra_args]
        self.timeout_s = timeout_s
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile("w+b", prefix="llama-server-", suffix=".log", delete=False)

    def log_tail(self, n: int = 2000) -> str:
        """The last `n` characters of the server's stdout + stderr."""
        return Path(self._log.name).read_bytes()[-n:].decode(errors="replace")

    def start(self) -> "LocalServer":
        """Start the server and wait until /v1/models answers, or raise LocalServerError with its log."""
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError as e:
            raise LocalServerError(f"llama-cpp-python's server is not installed ({e}); "
                                   "run `pip install 'llama-cpp-python[server]'`") from None
        self.proc = subprocess.Popen([sys.executable, "-m", __name__, *self.args], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LocalServerError(f"llama.cpp server exited with code {self.proc.returncode} before it was "
                                       f"ready:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise LocalServerError(f"llama.cpp server not ready after {self.timeout_s:.0f} s:\n{tail}")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 10 s) and remove its log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    main()
