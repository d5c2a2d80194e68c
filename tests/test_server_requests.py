"""The steered llama.cpp server under bad requests (loopback only): malformed JSON, a body that is not UTF-8, a
prompt longer than the context, max_tokens of 10^9, wrong field types, an oversized body, a missing key and 32
requests at once each get a 4xx with a message, the good requests around them get the same answers, and the
server's memory stays bounded. The launcher serves 127.0.0.1 unless told, and another address needs a key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from creative_eval import judges
from creative_eval.backends.llamacpp import server as server_mod
from creative_eval.backends.llamacpp.server import LocalServer, LocalServerError, free_port
from creative_eval.judges.presets import PresetError
from creative_eval.records import Story

KEY = "k-" + os.urandom(6).hex()
N_CTX = 512


def _post(srv: LocalServer, path: str, body: bytes, key: str | None = KEY,
          content_type: str = "application/json") -> tuple[int, dict]:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"raw": raw.decode(errors="replace")}


def _complete(srv: LocalServer, prompt: str, n: int = 6) -> str:
    status, answer = _post(srv, "/v1/completions", json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0,
                                                              "seed": 0}).encode())
    assert status == 200, answer
    return answer["choices"][0]["text"]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    srv = LocalServer(n_ctx=N_CTX, n_threads=1, api_key=KEY)
    try:
        srv.start()
    except LocalServerError as e:
        pytest.fail(str(e))
    yield srv
    srv.stop()


CHAT = "/v1/chat/completions"
BAD = {  # name: (path, body, status, words in the message)
    "malformed JSON": ("/v1/completions", b'{"prompt": "Once", ', 400, "not valid JSON"),
    "not UTF-8": ("/v1/completions", b'{"prompt": "\xff\xfe Once"}', 400, "not UTF-8"),
    "a JSON list": ("/v1/completions", b'["Once"]', 400, "not an object"),
    "max_tokens of 10^9": ("/v1/completions", json.dumps({"prompt": "Once", "max_tokens": 10**9}).encode(), 400,
                           f"context of {N_CTX} tokens"),
    "chat max_tokens of 10^9": (CHAT, json.dumps({"messages": [{"role": "user", "content": "Hi"}],
                                                  "max_tokens": 10**9}).encode(), 400, f"context of {N_CTX} tokens"),
    "prompt over the context": ("/v1/completions", json.dumps({"prompt": "word " * 2000, "max_tokens": 4}).encode(),
                                400, f"maximum context length is {N_CTX} tokens"),
    "chat over the context": (CHAT, json.dumps({"messages": [{"role": "user", "content": "word " * 2000}],
                                                "max_tokens": 4}).encode(), 400, "maximum context length"),
    "max_tokens a string": ("/v1/completions", json.dumps({"prompt": "Once", "max_tokens": "many"}).encode(), 422,
                            "max_tokens"),
    "negative max_tokens": ("/v1/completions", json.dumps({"prompt": "Once", "max_tokens": -5}).encode(), 422,
                            "max_tokens"),
    "messages not a list": (CHAT, json.dumps({"messages": "Hi"}).encode(), 422, "messages"),
    "two prompts": ("/v1/completions", json.dumps({"prompt": ["a", "b"]}).encode(), 400, "one prompt per request"),
    "an oversized body": ("/v1/completions", json.dumps({"prompt": "x" * (5 * 2**20)}).encode(), 413, "limit"),
}


@pytest.mark.real
def test_each_bad_request_gets_a_4xx_with_a_message_and_good_ones_still_get_their_answer(server):
    prompt = "Once upon a time, in a quiet village,"
    before = _complete(server, prompt)
    for name, (path, body, status, words) in BAD.items():
        got, answer = _post(server, path, body)
        message = answer.get("error", {}).get("message", "")
        assert (got, words in message) == (status, True), (name, got, answer)
        assert _complete(server, prompt) == before, name
    got, answer = _post(server, "/v1/completions", json.dumps({"prompt": prompt}).encode(), key=None)
    assert got == 401 and "API key" in json.dumps(answer)
    assert server.proc.poll() is None


@pytest.mark.real
def test_32_requests_at_once_are_all_answered_in_bounded_time_and_memory(server):
    prompts = ["The lighthouse keeper", "A dragon ran a bakery", "The train left at dawn", "She opened the letter"]
    want = {p: _complete(server, p) for p in prompts}
    rss_before = _rss_mb(server.proc.pid)
    jobs = [("good", p) for p in prompts * 6] + [("bad", name) for name in list(BAD)[:8]]

    def send(job):
        kind, what = job
        if kind == "good":
            return kind, what, _complete(server, what)
        path, body, status, _ = BAD[what]
        return kind, what, _post(server, path, body)[0] == status

    start = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(send, jobs))
    took = time.monotonic() - start
    assert len(results) == 32 and took < 240, took
    for kind, what, got in results:
        assert got == (want[what] if kind == "good" else True), (kind, what, got)
    rss_after = _rss_mb(server.proc.pid)
    assert rss_after < rss_before + 150, (rss_before, rss_after)
    assert _complete(server, prompts[0]) == want[prompts[0]]


@pytest.mark.real
def test_a_judge_preset_sends_the_key_its_api_key_env_names(server, tmp_path, monkeypatch):
    preset = tmp_path / "local.yaml"
    preset.write_text(f"backend: openai\nmodel: embedded\nbase_url: {server.base_url}\napi_key_env: CE_LOCAL_KEY\n"
                      "concurrency: 2\n", encoding="utf-8")
    story = Story(prompt_id="p", condition="x", prompt="Write a story.", text="The keeper lit the lamp.")
    monkeypatch.delenv("CE_LOCAL_KEY", raising=False)
    with pytest.raises(PresetError, match=r"api_key_env names \$CE_LOCAL_KEY, which is not set; export CE_LOCAL_KEY"):
        judges.load_judge(str(preset))
    monkeypatch.setenv("CE_LOCAL_KEY", KEY)
    rating = judges.load_judge(str(preset)).rate([story])[0]
    assert rating.status == "ok" and 0 <= rating.expected <= 9


# --- where the launcher listens -------------------------------------------------------------------------------------


def test_the_launcher_listens_on_loopback_unless_told_and_needs_a_key_elsewhere(monkeypatch):
    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.delenv("API_KEY", raising=False)
    assert server_mod.bind(["--port", "8000"]) == ["--host", "127.0.0.1", "--port", "8000"]
    assert server_mod.bind(["--host", "::1"])[:2] == ["--host", "::1"]
    assert server_mod.bind(["--host", "0.0.0.0", "--api-key", "k"]) == ["--host", "0.0.0.0", "--api_key", "k"]
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(SystemExit, match=f"--host {host} lets other machines use this server; pass --api-key"):
            server_mod.bind(["--host", host])
    monkeypatch.setenv("HOST", "0.0.0.0")  # uvicorn would read it over --host
    with pytest.raises(SystemExit, match="--host 0.0.0.0"):
        server_mod.bind([])


def test_serving_every_address_without_a_key_is_refused_before_anything_loads():
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "API_KEY")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "creative_eval.backends.llamacpp.server", "--host", "0.0.0.0",
                           "--port", str(free_port())], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and time.monotonic() - start < 60
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("local_server: error: --host 0.0.0.0 lets other machines"), lines
    assert "llama" not in proc.stdout.lower()
