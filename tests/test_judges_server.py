"""OpenAIJudge against a real llama.cpp server on loopback (the embedded model, Q4) and through a proxy
that injects faults: agreement with the local HF judge, pairwise, retries, missing logprobs, fatal errors."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from scipy.stats import spearmanr

from creative_eval.judges import base
from creative_eval.judges.hf import HFJudge
from creative_eval.backends.llamacpp.server import LocalServer, LocalServerError, free_port
from creative_eval.judges.openai_backend import JudgeBackendError, OpenAIJudge
from creative_eval.records import Story

pytestmark = pytest.mark.real

PROMPT = "Write a short story about a lighthouse keeper."
TEXTS = [
    "The keeper turned on the light. Then he turned it off. Then he went to bed.",
    "The lighthouse keeper worked at the lighthouse. He kept the light on. It was his job. He did his job well.",
    "Every night the keeper climbed the stairs and lit the lamp. Ships passed. He was lonely but content.",
    "The keeper knitted a scarf for the lighthouse, which shivered in winter storms and hummed its thanks in fog.",
    "Ships stopped coming, so the keeper aimed the beam at the moon, and one night the moon blinked back in Morse.",
    "A lighthouse keeper. A light. A rock. Water. Night. Day. Night again. The end.",
    "On Tuesdays the sea returned what it had borrowed: a violin, three letters, and the keeper's younger self.",
    "He kept the light, and the light kept him; when he died, it went on signalling his name to passing whales.",
    "The keeper counted the waves. There were many waves. He counted them all. Then he slept.",
    "The lamp ran on stories, so the keeper read aloud all night; dull chapters dimmed it and ships ran aground.",
    "Bob was a keeper. The light was bright. Bob liked the light. The light liked Bob. They were friends.",
    "The gulls unionised and demanded the keeper stop pointing that thing at them during their night shift.",
    "She inherited the lighthouse and found, in the lens, the reflection of every captain who had ever been saved.",
    "The keeper cleaned the lens every day with a cloth. The cloth was white. The lens was clean.",
    "A fog so thick arrived that the keeper walked out on it to the mainland and bought bread.",
    "Nothing happened at the lighthouse. The keeper waited. Still nothing happened. He waited more.",
    "The beam swept the sea and, at each pass, erased one ship from history, until the keeper noticed.",
    "The keeper was old. The keeper was tired. The lighthouse was old too. It was a nice lighthouse.",
    "Each lighthouse on the coast secretly competed in a blinking contest judged by insomniac crabs.",
    "The keeper wrote a letter to the storm, and the storm, flattered, wrote back in hailstones.",
]


def stories(texts=TEXTS) -> list[Story]:
    return [Story(prompt_id=f"l{i:02d}", condition="x", prompt=PROMPT, text=t) for i, t in enumerate(texts)]


@pytest.fixture(scope="session")
def server():
    """The embedded GGUF served by llama-cpp-python's server (without extra buffer types) on a free port."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    srv = LocalServer(n_ctx=2048, n_threads=2)
    try:
        srv.start()
    except LocalServerError as e:
        pytest.fail(str(e))
    yield srv
    srv.stop()


class FaultProxy:
    """A loopback HTTP proxy to `upstream`; request number n (1-based) gets `faults[n]`, every other one `default`.

    Faults: "429", "500", "401", "404" (error status, no forwarding), "drop" (close without a response),
    "slow" (answer nothing for `slow_s`), "strip" (forward, remove `logprobs` from the answer)."""

    def __init__(self, upstream: str, faults: dict[int, str] | None = None, default: str | None = None,
                 slow_s: float = 3.0):
        self.upstream, self.faults, self.default, self.slow_s = upstream.rstrip("/"), faults or {}, default, slow_s
        self.count, self.injected = 0, 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._forward(None)

            def do_POST(self):
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, body: bytes | None) -> None:
                with proxy._lock:
                    proxy.count += 1
                    fault = proxy.faults.get(proxy.count, proxy.default)
                    proxy.injected += fault not in (None, "strip")
                if fault in ("429", "500", "401", "404"):
                    return self._reply(int(fault), json.dumps({"error": {"message": f"injected {fault}"}}).encode())
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "slow":
                    time.sleep(proxy.slow_s)
                    return
                req = urllib.request.Request(proxy.upstream + self.path.removeprefix("/v1"), data=body,
                                             headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                if fault == "strip" and status == 200:
                    obj = json.loads(data)
                    for choice in obj.get("choices", []):
                        choice.pop("logprobs", None)
                    data = json.dumps(obj).encode()
                self._reply(status, data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "FaultProxy":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def judge_at(url: str, **kw) -> OpenAIJudge:
    kw = {"concurrency": 2, "timeout_s": 30.0, "backoff_s": 0.01, **kw}
    return OpenAIJudge("local", "embedded", base_url=url, api_key="unused", **kw)


@pytest.fixture(scope="module")
def server_ratings(server):
    """Logprob ratings of every story by the served (Q4) model."""
    return judge_at(server.base_url).rate(stories())


def test_server_ratings_agree_with_hf_judge(server_ratings, embedded):
    model, tok = embedded
    local = HFJudge("hf", model, tok, batch_size=4).rate(stories())
    assert all(r.status == "ok" for r in server_ratings + local)
    rho = spearmanr([r.expected for r in server_ratings], [r.expected for r in local]).statistic
    print(f"spearman(server Q4, HF fp32) over {len(local)} stories = {rho:.3f}")
    assert rho > 0.6  # measured 0.81 (Q4 server vs fp32 HF weights of the same model)


def test_server_pairwise_both_orders(server):
    items = stories()
    pairs = [base.PairItem(items[i], items[i + 1]) for i in (0, 3, 6)]
    prefs = judge_at(server.base_url).compare(pairs)
    assert len(prefs) == 3
    for p in prefs:
        assert p.status == "ok" and p.p_first_ab is not None and p.p_first_ba is not None
        assert 0 <= p.p_first_ab <= 1 and 0 <= p.p_first_ba <= 1 and p.decision in ("A", "B", "tie")


def test_injected_faults_are_retried_and_nothing_is_lost(server, server_ratings):
    faults = {2: "429", 3: "500", 5: "drop", 7: "slow"}
    # the timeout sits well above a real answer's time on a loaded machine, and the slow fault well above it
    with FaultProxy(server.base_url, faults, slow_s=15.0) as proxy:
        judge = judge_at(proxy.base_url, timeout_s=6.0)
        got = judge.rate(stories()[:6])
    print(f"requests={proxy.count} injected={proxy.injected} retries={judge.retries}")
    assert proxy.injected == len(faults) and judge.retries == len(faults)
    assert proxy.count == 6 + len(faults)
    assert [r.expected for r in got] == pytest.approx([r.expected for r in server_ratings[:6]], abs=1e-6)


def test_missing_logprobs_is_a_clear_error_and_generate_still_rates(server):
    with FaultProxy(server.base_url, default="strip") as proxy:
        with pytest.raises(JudgeBackendError, match="parse: generate"):
            judge_at(proxy.base_url, concurrency=1).rate(stories()[:1])
        got = judge_at(proxy.base_url, parse="generate").rate(stories()[:6])
    ok = [r for r in got if r.status == "ok"]
    print(f"generate mode: {len(ok)}/{len(got)} answers with a digit: {[r.raw for r in got]}")
    for r in got:
        if r.status == "ok":
            assert r.expected == float(base.parse_digit(r.raw)) and 0 <= r.expected <= 9
        else:
            assert r.status.startswith("invalid") and r.expected is None and r.argmax is None


def test_unreachable_server_fails_quickly_after_bounded_retries():
    judge = judge_at(f"http://127.0.0.1:{free_port()}/v1", concurrency=1, timeout_s=1.0, max_retries=2)
    start = time.perf_counter()
    with pytest.raises(JudgeBackendError, match="gave up after 3 tries"):
        judge.rate(stories()[:1])
    assert judge.retries == 2 and time.perf_counter() - start < 5


@pytest.mark.parametrize("status", ["401", "404"])
def test_auth_and_not_found_are_fatal_without_retries(server, status):
    with FaultProxy(server.base_url, default=status) as proxy:
        judge = judge_at(proxy.base_url, concurrency=1)
        with pytest.raises(JudgeBackendError, match=f"refused model 'embedded' \\({status}\\)"):
            judge.rate(stories()[:1])
    assert proxy.count == 1 and judge.retries == 0
