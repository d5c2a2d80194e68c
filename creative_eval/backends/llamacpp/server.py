"""Serve a GGUF model (default: the embedded one) as an OpenAI-compatible API with llama-cpp-python's server.

    python -m creative_eval.backends.llamacpp.server --port 8000 --n_threads 2   # foreground; any server option
    python -m creative_eval.backends.llamacpp.server --direction d.safetensors --alpha 0.2   # steered (engine.py)
    python -m creative_eval.backends.llamacpp.server --help  # its own options (`options`), then llama.cpp's
    with LocalServer() as srv:                                               # background, stopped on exit
        judge = OpenAIJudge("local", "embedded", base_url=srv.base_url)

Weights are loaded without llama.cpp's extra buffer types (weight repacking): on machines that report AMX
but cannot run its tile instructions (some VMs and sandboxes), the repacked AMX kernels kill the server with
SIGILL on its first request. The server has no option for this, so the launcher sets `use_extra_bufts=False`
on llama.cpp's default model parameters before starting it; pass `--extra_bufts` to keep them.

It listens on 127.0.0.1 unless `--host` says otherwise, and another address needs `--api-key KEY` (clients then
send it as a bearer token; a judge preset's `api_key_env` names the variable holding it). A bad request gets a
4xx answer with an OpenAI-style error message and the server goes on serving: a body over 4 MiB (413), not UTF-8
or not a JSON object (400), fields of the wrong type (422), `max_tokens` above the context (400; llama.cpp itself
refuses a prompt longer than the context with 400 and stops a completion at the context's end)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Sequence

from creative_eval.steering import settings
from creative_eval.usage import HelpFormatter

PROG = "python -m creative_eval.backends.llamacpp.server"
MAX_BODY = 4 * 2**20  # bytes: a prompt that fills the largest context is far smaller
DEFAULT_N_CTX = 2048  # llama-cpp-python's server default


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


def bind(argv: Sequence[str]) -> list[str]:
    """The server's arguments with its address made explicit: `--host` (or $HOST) if given, else 127.0.0.1; a host
    other than loopback without `--api-key` (or $API_KEY) exits with one line, before anything loads."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--host", default=None)
    parser.add_argument("--api-key", "--api_key", dest="api_key", default=None)
    ours, rest = parser.parse_known_args(list(argv))
    host = ours.host or os.environ.pop("HOST", None) or "127.0.0.1"  # uvicorn would read $HOST over --host
    if not _loopback(host) and not (ours.api_key or os.environ.get("API_KEY")):
        raise SystemExit(f"local_server: error: --host {host} lets other machines use this server; pass --api-key KEY "
                         "as well (clients send it as a bearer token; a judge preset's api_key_env names the "
                         "environment variable that holds it), or leave --host out to serve on 127.0.0.1 only")
    return ["--host", host, *(["--api_key", ours.api_key] if ours.api_key else []), *rest]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def _n_ctx(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--n_ctx", type=int, default=DEFAULT_N_CTX)
    try:
        return parser.parse_known_args(list(argv))[0].n_ctx
    except SystemExit:
        return 0  # llama.cpp's own parser will say what is wrong with it


def options() -> argparse.ArgumentParser:
    """The launcher's own options, as `--help` lists them before llama-cpp-python's (which pass through); `bind`
    and `engine.server_steering` read them from the arguments."""
    p = argparse.ArgumentParser(prog=PROG, add_help=False, allow_abbrev=False, formatter_class=HelpFormatter,
                                description="An OpenAI-compatible server of a GGUF model (llama-cpp-python's), "
                                            "optionally steered by a creativity direction. Its own options:")
    p.add_argument("--model", default=None, help="the .gguf file to serve (default: the embedded model, "
                   "SmolLM2-135M-Instruct)")
    p.add_argument("--direction", default=None, metavar="FILE",
                   help="a direction .safetensors: every completion is steered with it, as a control vector at the "
                        "direction's layer (default: unsteered)")
    settings.server_strength_args(p)
    p.add_argument("--host", default=None, help="the address to listen on (default: $HOST, else 127.0.0.1); "
                   "any but loopback needs --api-key")
    p.add_argument("--api-key", "--api_key", dest="api_key", default=None,
                   help="the key clients must send as a bearer token (default: $API_KEY, else none)")
    p.add_argument("--extra_bufts", action="store_true",
                   help="keep llama.cpp's extra buffer types (weight repacking); off, because its AMX kernels kill "
                        "the server with SIGILL on machines that report AMX but cannot run it")
    p.add_argument("-h", "--help", action="store_true", help="show this help, then llama-cpp-python's, and exit")
    return p


def print_help() -> None:
    """Our options, then llama-cpp-python's server's (its own `--help`, which exits); nothing loads a model."""
    options().print_help()
    print("\nllama-cpp-python's server options (passed through to it):\n", flush=True)
    try:
        from llama_cpp.server.__main__ import main as server_main
    except ImportError as e:
        print(f"  not installed ({e}); run `pip install 'llama-cpp-python[server]'`")
        return
    sys.argv = [PROG, "--help"]
    server_main()


def main(argv: Sequence[str] | None = None) -> None:
    """llama_cpp.server's command line (same options), `--model` defaulting to the embedded GGUF, on 127.0.0.1
    unless told otherwise, answering bad requests with 4xx and a message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print_help()
        return
    args = bind(argv)
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
    check_requests(_n_ctx(args))
    from llama_cpp.server.__main__ import main as server_main

    sys.argv = ["llama_cpp.server", *args]
    server_main()


def check_requests(n_ctx: int) -> None:
    """Make llama-cpp-python's routes answer bad requests with 4xx and a message instead of 500 (its error handler
    re-reads a body that is not JSON and fails again). Runs before `llama_cpp.server.app` builds its routes."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from llama_cpp.server import errors

    if "llama_cpp.server.app" in sys.modules:
        raise RuntimeError("check_requests must run before llama_cpp.server.app is imported")
    route = errors.RouteErrorHandler
    handler_of, wrap = route.get_route_handler, route.error_message_wrapper

    def get_route_handler(self):
        handler = handler_of(self)

        async def checked(request):
            problem = await _problem(request, n_ctx) if request.method == "POST" else None
            if problem is not None:
                return JSONResponse({"error": _error(problem[1])}, status_code=problem[0])
            return await handler(request)

        return checked

    def error_message_wrapper(self, error, body=None):
        if isinstance(error, RequestValidationError):
            return 422, _error("; ".join(_field(e) for e in error.errors()[:4]))
        return wrap(self, error, body)

    route.get_route_handler, route.error_message_wrapper = get_route_handler, error_message_wrapper


def _error(message: str) -> dict:
    return {"message": message, "type": "invalid_request_error", "param": None, "code": None}


def _field(e: dict) -> str:
    where = ".".join(str(part) for part in e.get("loc", ()) if part != "body") or "body"
    return f"{where}: {e.get('msg', 'invalid')} (got {json.dumps(e.get('input'), default=str)[:60]})"


async def _problem(request, n_ctx: int) -> tuple[int, str] | None:
    """(status, message) for a request body this server cannot take, else None."""
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > MAX_BODY:
        async for _ in request.stream():  # read and drop it, so the client hears the answer instead of a reset
            pass
        return 413, f"the request body has {int(size)} bytes, over this server's limit of {MAX_BODY}"
    body = await request.body()  # kept by the request: the route reads it again
    if len(body) > MAX_BODY:
        return 413, f"the request body has {len(body)} bytes, over this server's limit of {MAX_BODY}"
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        return 400, f"the request body is not UTF-8 (byte {e.start}); send JSON encoded as UTF-8"
    except json.JSONDecodeError as e:
        return 400, f"the request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); send one JSON object"
    if not isinstance(data, dict):
        return 400, f"the request body is a JSON {type(data).__name__}, not an object; send one JSON object"
    max_tokens = data.get("max_tokens")
    if n_ctx and isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > n_ctx:
        return 400, (f"max_tokens {max_tokens} is more than this model's context of {n_ctx} tokens, which the prompt "
                     f"and the completion share; ask for at most {n_ctx}")
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) > 1:
        return 400, f"prompt holds {len(prompt)} prompts; send one prompt per request"
    return None


class LocalServer:
    """A llama.cpp server in a child process on loopback; `base_url` is ready for OpenAIJudge once started."""

    def __init__(self, model: str | Path | None = None, *, port: int | None = None, n_ctx: int = 2048,
                 n_threads: int = 1, extra_args: Sequence[str] = (), timeout_s: float = 120.0,
                 api_key: str | None = None):
        if model is None:
            from creative_eval.models import embedded_gguf

            model = embedded_gguf()
        self.model, self.port = str(model), port or free_port()
        self.args = ["--model", self.model, "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx),
                     "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
                     *(["--api-key", api_key] if api_key else []), *extra_args]
        self.timeout_s, self.api_key = timeout_s, api_key
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
                ask = urllib.request.Request(f"{self.base_url}/models",
                                             headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})
                with urllib.request.urlopen(ask, timeout=2) as r:
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
