"""Outputs that survive their writers: two `judge` processes on one file, `generate` killed and re-run, stores
and reports that count a stored duplicate once, and a malformed OpenAI-compatible answer explained in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from creative_eval import cli
from creative_eval import direction, judges, report
from creative_eval.steering import Steering, generate
from creative_eval.judges import store
from creative_eval.judges.openai_backend import JudgeBackendError, OpenAIJudge
from creative_eval.records import Pair, Story, read_records
from conftest import kill_after_lines

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
GOOD = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [{
    "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "7"},
    "logprobs": {"content": [{"token": "7", "logprob": -0.1, "bytes": None, "top_logprobs": [
        {"token": "7", "logprob": -0.1, "bytes": None}, {"token": "3", "logprob": -2.5, "bytes": None},
        *({"token": t, "logprob": -30.0, "bytes": None} for t in "01245689")]}]}}]}  # 10 top logprobs, as servers give


class FakeServer:
    """An OpenAI-compatible endpoint on loopback whose body is whatever `answer` says (text, content type)."""

    def __init__(self, delay_s: float = 0.0):
        self.answer: tuple[str, str] = (json.dumps(GOOD), "application/json")
        self.delay_s, self.requests = delay_s, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests += 1
                time.sleep(outer.delay_s)
                body, kind = outer.answer
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()


@pytest.fixture
def server():
    srv = FakeServer()
    yield srv
    srv.close()


def _stories(n: int, path: Path | None = None) -> list[Story]:
    out = [Story(prompt_id=f"p{i}", condition=c, prompt="Write a story.", text=f"Story {i} {c}.")
           for i in range(n) for c in ("baseline", "induced")]
    if path is not None:
        path.write_text("".join(json.dumps({"prompt_id": s.prompt_id, "condition": s.condition, "prompt": s.prompt,
                                            "text": s.text}) + "\n" for s in out), encoding="utf-8")
    return out


# --- malformed answers of an OpenAI-compatible server ---------------------------------------------------------------

MALFORMED = {
    "html": ("<html><body>Welcome to nginx!</body></html>", "text/html", "not JSON"),
    "empty object": ("{}", "application/json", "without a list of choices"),
    "not json": ("Expecting value", "application/json", "not JSON"),
    "no choices": ('{"choices": []}', "application/json", "without a list of choices"),
    "list": ("[1, 2]", "application/json", "without a list of choices"),
    "choice without message": ('{"choices": [{"index": 0}]}', "application/json", "a choice without a message"),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_answer_is_one_clear_line(kind, server):
    body, content_type, what = MALFORMED[kind]
    server.answer = (body, content_type)
    judge = OpenAIJudge("fake", "m", base_url=server.url, max_retries=0)
    with pytest.raises(JudgeBackendError) as e:
        judge.rate(_stories(1)[:1])
    message = str(e.value)
    for needed in (server.url, what, repr(body[:80]), "check that the base URL"):
        assert needed in message, message


def test_answer_without_logprobs_says_to_parse(server):
    server.answer = (json.dumps({**GOOD, "choices": [{**GOOD["choices"][0], "logprobs": None}]}), "application/json")
    with pytest.raises(JudgeBackendError, match="no logprobs.*parse: generate"):
        OpenAIJudge("fake", "m", base_url=server.url, max_retries=0).rate(_stories(1)[:1])


def _preset(tmp_path: Path, url: str, **fields) -> Path:
    path = tmp_path / "fake.yaml"
    lines = ["backend: openai", "model: m", f"base_url: {url}", "concurrency: 1", *(f"{k}: {v}" for k, v in fields.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_reports_html_answer_without_traceback_and_writes_nothing(server, tmp_path, capsys):
    server.answer = ("<html>proxy login</html>", "text/html")
    out, stories = tmp_path / "r.jsonl", tmp_path / "s.jsonl"
    _stories(2, stories)
    code = cli.main(["judge", "--judge", str(_preset(tmp_path, server.url)), "--input", str(stories),
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and server.url in err and "proxy login" in err
    assert not out.exists() or out.read_text() == ""


def test_api_judge_refuses_a_story_over_its_character_limit_before_any_request(server, tmp_path, capsys):
    stories = tmp_path / "s.jsonl"
    _stories(2, stories)
    rows = stories.read_text().splitlines()
    rows[1] = json.dumps({**json.loads(rows[1]), "text": "word " * 50})
    stories.write_text("\n".join(rows) + "\n")
    code = cli.main(["judge", "--judge", str(_preset(tmp_path, server.url, max_input_chars=100)), "--input",
                     str(stories), "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "p0:induced has 250 characters" in err and "max_input_chars" in err
    assert server.requests == 0


# --- two writers, one file ------------------------------------------------------------------------------------------


def test_two_judge_processes_on_one_out_write_every_key_once(tmp_path):
    srv = FakeServer(delay_s=0.05)
    try:
        stories = tmp_path / "s.jsonl"
        _stories(8, stories)
        out = tmp_path / "r.jsonl"
        argv = [sys.executable, "-m", "creative_eval.cli", "judge", "--judge", str(_preset(tmp_path, srv.url)),
                "--input", str(stories), "--out", str(out)]
        procs = [subprocess.Popen(argv, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        results = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [r[1].decode()[-1500:] for r in results]
    finally:
        srv.close()
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert len(keys) == 16 and len(set(keys)) == 16  # every story rated, each key exactly once
    assert srv.requests == 16  # the second writer waited, then found every key done


def test_store_and_report_count_a_stored_duplicate_once(tmp_path):
    path = tmp_path / "ratings-j.jsonl"
    ratings = [{"key": f"k{i}", "judge": "j", "story_id": f"p{i}:induced", "expected": 5.0, "status": "ok"}
               for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in ratings + ratings[:2]), encoding="utf-8")
    assert [r["key"] for r in store.records(path)] == ["k0", "k1", "k2"]
    run = report.load_runs([tmp_path])
    assert len(run.ratings) == 3
    assert run.notes == {"ratings-j.jsonl: duplicate records (each counted once)": "2"}
    summary = report.summarize([], run.ratings, [], {}, [], run.notes, None, 50)
    assert summary["ratings"]["j"]["n_invalid"] == 0


# --- generate: appended as made, resumed by key ---------------------------------------------------------------------

PAIRS = [Pair(id=f"g{i}", creative=f"A dragon council argues about the rain, take {i}.",
              uncreative=f"A dragon council approves the minutes, take {i}.", split="test") for i in range(6)]
WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import tiny_llama, tiny_tokenizer
from creative_eval import direction
from creative_eval.records import Pair
from creative_eval.steering import Steering, generate
tok = tiny_tokenizer(); model = tiny_llama(vocab=len(tok))
pairs = [Pair(id=f"g{{i}}", creative=f"A dragon council argues about the rain, take {{i}}.",
              uncreative=f"A dragon council approves the minutes, take {{i}}.", split="test") for i in range(6)]
d = direction.extract(model, tok, pairs, 2, model_id="tiny")
real = generate.generate
generate.generate = lambda *a, **k: time.sleep({sleep}) or real(*a, **k)
generate.resume({out!r}, model, tok, pairs, d, steering=Steering(0.5),
                sampling=generate.Sampling(max_new_tokens=6, batch_size=2), model_id="tiny")
"""


def _writer(out: Path, sleep: float) -> subprocess.Popen:
    code = WRITER.format(tests=str(Path(__file__).parent), out=str(out), sleep=sleep)
    return subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_generate_killed_then_rerun_makes_every_story_once_and_keeps_the_finished_ones(tiny, tmp_path):
    out = tmp_path / "stories.jsonl"
    proc = _writer(out, sleep=0.4)
    killed = kill_after_lines(proc, out, 4)
    finished = killed[: killed.rfind(b"\n") + 1]  # whole lines: what the killed run had made
    assert 4 <= finished.count(b"\n") < 18
    again = _writer(out, 0.0)
    assert again.wait(timeout=300) == 0, again.stderr.read().decode()[-2000:]
    final = out.read_bytes()
    assert final.startswith(finished)  # the finished stories are byte-identical
    stories = read_records(out, Story)
    assert sorted(s.id for s in stories) == sorted(f"g{i}:{c}" for i in range(6)
                                                    for c in ("baseline", "induced", "creative"))
    # resuming made the same stories as one uninterrupted run (batch seeds do not depend on what was skipped)
    model, tokenizer = tiny  # the writer's model: same seed, same weights
    whole = generate.stories(model, tokenizer, PAIRS, direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny"),
                             steering=Steering(0.5), sampling=generate.Sampling(max_new_tokens=6, batch_size=2), model_id="tiny")
    assert {s.id: s.text for s in stories} == {s.id: s.text for s in whole}


def test_generate_refuses_to_mix_settings_into_one_file(tiny, tmp_path):
    model, tokenizer = tiny
    d = direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny")
    out = tmp_path / "s.jsonl"
    sampling = generate.Sampling(max_new_tokens=3, batch_size=3)
    first = generate.resume(out, model, tokenizer, PAIRS[:3], d, steering=Steering(0.2), conditions=["induced"], sampling=sampling)
    before = out.read_bytes()
    assert generate.resume(out, model, tokenizer, PAIRS[:3], d, steering=Steering(0.2), conditions=["induced"],
                           sampling=sampling) == first
    with pytest.raises(ValueError, match=r"g0:induced was made with other settings \(alpha 0.2 there vs 0.4 now\)"):
        generate.resume(out, model, tokenizer, PAIRS[:3], d, steering=Steering(0.4), conditions=["induced"], sampling=sampling)
    assert out.read_bytes() == before


def test_judges_run_resumes_with_stories_of_any_condition(tiny, tmp_path):
    model, tokenizer = tiny
    judge = judges.load_judge("embedded", model, tokenizer)
    stories = [Story(prompt_id="h1", condition="human", prompt="Write.", text="A person wrote this."),
               Story(prompt_id="h1", condition="gpt-4", prompt="Write.", text="A model wrote this.")]
    out = tmp_path / "r.jsonl"
    first = judges.run(judge, "pairwise", judges.pairs_by_condition(stories, "human", "gpt-4"), out)
    again = judges.run(judge, "pairwise", judges.pairs_by_condition(stories, "human", "gpt-4"), out)
    assert len(first) == len(again) == 1
