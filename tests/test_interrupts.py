"""Commands stopped early: Ctrl-C (SIGINT) and SIGTERM sent to a real `creative-eval` process mid-run, a second
Ctrl-C, a full disk (ENOSPC) and a file-size limit (EFBIG): one line saying what is saved, the right exit status, no
traceback, no torn or duplicate line, and a re-run that finishes the rest."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from creative_eval import cli, direction, models, records
from creative_eval.records import Pair, Story, read_records
from conftest import tiny_llama, tiny_tokenizer
from test_writers import ENV, FakeServer, _preset, _stories

TESTS = str(Path(__file__).parent)
N = 20  # stories to rate: 2 conditions x 10 prompts
RATING = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [{
    "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "7"},
    "logprobs": {"content": [{"token": "7", "logprob": -0.1, "bytes": None, "top_logprobs": [
        {"token": str(d), "logprob": -0.1 if d == 7 else -5.0, "bytes": None} for d in range(10)]}]}}]}


def _server(delay_s: float = 0.0) -> FakeServer:
    """The fake OpenAI-compatible judge, answering a rating with the logprobs of all ten digits."""
    srv = FakeServer(delay_s=delay_s)
    srv.answer = (json.dumps(RATING), "application/json")
    return srv


def _judge(tmp_path: Path, url: str, out: Path, preexec=None) -> subprocess.Popen:
    stories = tmp_path / "s.jsonl"
    if not stories.exists():
        _stories(N // 2, stories)
    argv = [sys.executable, "-m", "creative_eval.cli", "judge", "--judge", str(_preset(tmp_path, url)),
            "--input", str(stories), "--out", str(out)]
    return subprocess.Popen(argv, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=preexec)


def _wait_lines(proc: subprocess.Popen, out: Path, lines: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not (out.is_file() and out.read_bytes().count(b"\n") >= lines):
        assert proc.poll() is None, f"exited early: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, f"nothing written within {timeout_s:g} s"
        time.sleep(0.02)


def _last_line(err: bytes) -> str:
    """The last line on stderr (after tqdm's carriage-return updates)."""
    return err.decode().strip().splitlines()[-1].split("\r")[-1]


def _whole_records(out: Path) -> list[dict]:
    """Every line a JSON object, the file ending on a newline, no key twice."""
    data = out.read_bytes()
    assert data.endswith(b"\n"), data[-200:]
    rows = [json.loads(line) for line in data.decode().splitlines()]
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), "a key written twice"
    return rows


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_judge_interrupted_says_what_is_saved_and_a_rerun_finishes(sig, code, tmp_path):
    srv = _server(delay_s=0.1)
    out = tmp_path / "r.jsonl"
    try:
        proc = _judge(tmp_path, srv.url, out)
        _wait_lines(proc, out, 8)  # the first chunk of 8 is saved; the second is being judged
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err.decode()[-2000:]
        assert b"Traceback" not in err
        line = _last_line(err)
        saved = _whole_records(out)
        assert line == (f"interrupted: {len(saved)} of {N} judgements saved in {out}; run the same command again "
                        "to resume"), line
        assert 8 <= len(saved) < N
        before = out.read_bytes()
        again = _judge(tmp_path, srv.url, out)  # the lock was released: it does not wait
        _, err = again.communicate(timeout=180)
        assert again.returncode == 0, err.decode()[-2000:]
        assert b"another process is writing" not in err
    finally:
        srv.close()
    assert out.read_bytes().startswith(before)
    assert len(_whole_records(out)) == N


def test_second_ctrl_c_exits_at_once(tmp_path):
    srv = _server(delay_s=0.1)
    out = tmp_path / "r.jsonl"
    try:
        proc = _judge(tmp_path, srv.url, out)
        _wait_lines(proc, out, 8)
        srv.delay_s = 20  # the request in flight now holds the exit of the worker thread
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        seen = b""
        deadline = time.monotonic() + 60
        while b"to resume\n" not in seen:  # the first line is out; the process waits for its worker thread
            assert time.monotonic() < deadline and proc.poll() is None, seen.decode()[-2000:]
            seen += os.read(proc.stderr.fileno(), 65536)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        took = time.monotonic() - sent
        err = seen + proc.stderr.read()
    finally:
        srv.close()
    assert proc.returncode == 130 and took < 5, (proc.returncode, took)
    assert b"Traceback" not in err
    assert _last_line(err) == "interrupted again: stopped at once; run the same command again to resume"
    assert 8 <= len(_whole_records(out)) < N


GENERATE = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import tiny_llama, tiny_tokenizer
from creative_eval import cli, models
from creative_eval.steering import generate
tok = tiny_tokenizer(); model = tiny_llama(vocab=len(tok))
models.load = lambda *a, **k: (model, tok)
real = generate.generate
generate.generate = lambda *a, **k: time.sleep({sleep}) or real(*a, **k)
sys.exit(cli.main(["generate", "--model", "tiny", "--pairs", {pairs!r}, "--split", "test", "--max-new-tokens", "4",
                   "--batch-size", "2", "--alpha", "0.5", "--out", {out!r}]))
"""


def _generate(tmp_path: Path, out: Path, sleep: float) -> subprocess.Popen:
    pairs = tmp_path / "pairs.jsonl"
    if not pairs.exists():
        pairs.write_text("".join(json.dumps({"id": f"g{i}", "creative": f"A dragon council argues, take {i}.",
                                             "uncreative": f"A dragon council approves the minutes, take {i}.",
                                             "split": "test"}) + "\n" for i in range(6)), encoding="utf-8")
    code = GENERATE.format(tests=TESTS, pairs=str(pairs), out=str(out), sleep=sleep)
    env = {**ENV, "CREATIVE_EVAL_CACHE": str(tmp_path / "cache")}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_generate_sigterm_keeps_whole_stories_and_a_rerun_makes_the_rest(tmp_path):
    out = tmp_path / "stories.jsonl"
    proc = _generate(tmp_path, out, sleep=0.5)
    _wait_lines(proc, out, 4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()[-2000:]
    assert b"Traceback" not in err
    kept = read_records(out, Story)
    assert out.read_bytes().endswith(b"\n") and 4 <= len(kept) < 18
    assert _last_line(err) == (f"interrupted: {len(kept)} of 18 stories saved in {out}; run the same command "
                               "again to resume")
    before = out.read_bytes()
    again = _generate(tmp_path, out, sleep=0.0)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()[-2000:]
    assert out.read_bytes().startswith(before)
    ids = [s.id for s in read_records(out, Story)]
    assert sorted(ids) == sorted(f"g{i}:{c}" for i in range(6) for c in ("baseline", "induced", "creative"))


# --- a full disk ----------------------------------------------------------------------------------------------------


def _size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing
    return apply


def test_judge_at_a_file_size_limit_stops_with_one_line_and_resumes_once_there_is_room(tmp_path):
    srv = _server()
    out = tmp_path / "r.jsonl"
    try:
        proc = _judge(tmp_path, srv.url, out, preexec=_size_limit(1500))
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 2, err.decode()[-2000:]
        assert b"Traceback" not in err
        kept = _whole_records(out)
        assert 0 < len(kept) < N and out.stat().st_size <= 1500
        assert _last_line(err) == (f"creative-eval judge: error: {out}: File too large; it keeps {len(kept)} of {N} "
                                   "judgements, each whole; free space (or raise the file-size limit) and run the "
                                   "same command again to resume")
        before = out.read_bytes()
        again = _judge(tmp_path, srv.url, out)
        _, err = again.communicate(timeout=180)
        assert again.returncode == 0, err.decode()[-2000:]
    finally:
        srv.close()
    assert out.read_bytes().startswith(before) and len(_whole_records(out)) == N


def _full_after(path: Path, appends: int, monkeypatch) -> None:
    """os.write to `path` takes `appends` records, then half of the next one, then fails with ENOSPC."""
    real, count = os.write, {"n": 0}

    def write(fd: int, data: bytes) -> int:
        if fd > 2 and os.readlink(f"/proc/self/fd/{fd}") == str(path):
            count["n"] += 1
            if count["n"] > appends + 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if count["n"] == appends + 1:
                return real(fd, data[: len(data) // 2])
        return real(fd, data)

    monkeypatch.setattr(records.os, "write", write)


def test_append_on_a_full_disk_keeps_every_whole_record_and_names_the_file(tmp_path, monkeypatch):
    out = tmp_path / "x.jsonl"
    _full_after(out, 3, monkeypatch)
    for i in range(3):
        records.append_jsonl(out, {"key": f"k{i}", "text": "é" * 50})
    with pytest.raises(OSError) as e:
        records.append_jsonl(out, {"key": "k3", "text": "é" * 50})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(out)
    assert [r["key"] for r in _whole_records(out)] == ["k0", "k1", "k2"]  # the half-written line was cut back
    monkeypatch.undo()
    records.append_jsonl(out, {"key": "k3", "text": "é" * 50})
    assert [r["key"] for r in _whole_records(out)] == ["k0", "k1", "k2", "k3"]


def test_judge_on_a_full_disk_says_what_the_file_keeps(tmp_path, monkeypatch, capsys):
    srv = _server()
    out, stories = tmp_path / "r.jsonl", tmp_path / "s.jsonl"
    _stories(5, stories)
    argv = ["judge", "--judge", str(_preset(tmp_path, srv.url)), "--input", str(stories), "--out", str(out)]
    try:
        _full_after(out, 3, monkeypatch)
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert _last_line(err.encode()) == (f"creative-eval judge: error: {out}: No space left on device; it keeps 3 "
                                            "of 10 judgements, each whole; free space (or raise the file-size limit) "
                                            "and run the same command again to resume")
        monkeypatch.undo()
        assert cli.main(argv) == 0
    finally:
        srv.close()
    assert len(_whole_records(out)) == 10


# --- whole files: a direction and its exports -----------------------------------------------------------------------

WRITERS = """
import contextlib, io, json, resource, sys
sys.path.insert(0, {tests!r})
from conftest import tiny_llama, tiny_tokenizer
from creative_eval import cli, models
tok = tiny_tokenizer(); model = tiny_llama(vocab=len(tok))
models.load = lambda *a, **k: (model, tok)
resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
results = []
for argv in {commands!r}:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def test_direction_and_exports_at_a_size_limit_leave_no_half_written_file(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": f"g{i}", "creative": f"A dragon council argues, take {i}.",
                                         "uncreative": f"A dragon council approves the minutes, take {i}.",
                                         "split": "test"}) + "\n" for i in range(4)), encoding="utf-8")
    d = direction.save(direction.extract(model, tokenizer, [Pair(id="a", creative="A wild tale.", uncreative="A plain "
                       "list.", split="test"), Pair(id="b", creative="A strange dream.", uncreative="A receipt.",
                       split="test")], 2, model_id="tiny"), tmp_path / "given" / "d.safetensors")
    made = tmp_path / "made"
    commands = [["direction", "--model", "tiny", "--pairs", str(pairs), "--split", "test", "--layer", "2", "--out",
                 str(made / "d.safetensors")],
                ["export", "--format", "lm-eval-steered", "--model", "tiny", "--direction", str(d), "--out",
                 str(made / "d.pt")],
                ["export", "--format", "llamacpp-cvec", "--model", "tiny", "--direction", str(d), "--out",
                 str(made / "d.gguf")]]
    code = WRITERS.format(tests=TESTS, commands=commands)
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    for argv, (status, err) in zip(commands, json.loads(proc.stdout)):
        out = argv[-1]
        assert status == 2 and "Traceback" not in err, err
        assert _last_line(err.encode()) == (f"creative-eval {argv[0]}: error: {out}: not written (File too large); "
                                            "nothing half-written was left there; free space (or raise the file-size "
                                            "limit) and run the same command again"), err
    assert sorted(p.name for p in made.iterdir()) == []  # neither the file nor a temporary one
    monkeypatch.setattr(models, "load", lambda *a, **k: (model, tokenizer))
    for argv in commands:  # room again: each is written whole
        assert cli.main(argv) == 0
    assert sorted(p.name for p in made.iterdir()) == ["d.gguf", "d.pt", "d.safetensors"]
    assert direction.load(made / "d.safetensors", model).layer == 2


def test_the_line_names_what_each_kind_of_output_holds(tmp_path):
    from creative_eval.cli import stopping

    folder = tmp_path / "frontier"
    (folder / "sub").mkdir(parents=True)
    (folder / "stories.jsonl").write_text("".join(json.dumps({"prompt_id": f"p{i}", "condition": "baseline",
                                                              "prompt": "W.", "text": "T."}) + "\n" for i in range(3)))
    (folder / "sub" / "ratings-self.jsonl").write_text(json.dumps({"key": "k", "judge": "self"}) + "\n" + '{"key": "k2"')
    assert stopping.saved([(str(folder), "records")]) == (f"4 records saved in {folder} (stories.jsonl 3, "
                                                          "sub/ratings-self.jsonl 1); run the same command again to "
                                                          "resume")
    stopping.expect(folder / "stories.jsonl", 5)
    assert stopping.saved([(str(folder / "stories.jsonl"), "stories")]).startswith("3 of 5 stories saved in ")
    assert stopping.saved([("d.safetensors", stopping.WHOLE)]) == ("d.safetensors was not written (it is written "
                                                                   "whole, at the end); run the same command again")
    assert stopping.saved([]) == "nothing was saved; run the same command again"
