"""Judge through any OpenAI-compatible chat API (OpenAI, vLLM, llama.cpp server, TGI).

Label probabilities come from `logprobs.content[0].top_logprobs` of a one-token answer. Requests run
with bounded concurrency; 429, 5xx, timeouts and dropped connections are retried with exponential
backoff and full jitter (counted in `.retries`); 401/403/404, a server that ignores `logprobs` and one that
returns fewer top logprobs than there are labels fail at once with a clear error. Labels missing from the top
logprobs count 0; a judgement whose labels hold almost none of the probability is invalid (`base.MIN_LABEL_MASS`)."""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import openai
from tqdm.auto import tqdm

from creative_eval.judges.base import MIN_LABEL_MASS, Judge, Templates

RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError)
FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


class JudgeBackendError(RuntimeError):
    """A server that cannot serve this judge; the message names the server and the fix."""


class OpenAIJudge(Judge):
    def __init__(self, judge_id: str, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 templates: Templates = Templates(), tie_band: float = 0.0, parse: str = "logprobs",
                 concurrency: int = 4, timeout_s: float = 60.0, max_retries: int = 6, backoff_s: float = 0.5,
                 max_input_chars: int | None = None,
                 min_label_mass: float = MIN_LABEL_MASS):
        super().__init__(judge_id, templates, tie_band, min_label_mass)
        self.max_input_chars = max_input_chars  # longer stories are refused before any request (judges.limits)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("none" if self.base_url else None)
        if key is None:
            raise JudgeBackendError(f"judge {judge_id!r}: no API key; set OPENAI_API_KEY or pass api_key")
        # our own backoff, not the client's max_retries: the client reports its retries only through a private
        # logger, and the retry count is part of what a judge run reports
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout_s, max_retries=0)
        self.model, self.parse, self.concurrency = model, parse, concurrency
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.retries = 0
        self._lock = threading.Lock()

    def _request(self, text: str, labels: Sequence[str]) -> tuple[list[float] | None, str | None]:
        kwargs = dict(model=self.model, messages=[{"role": "user", "content": text}], temperature=0)
        if self.parse == "logprobs":
            kwargs.update(max_tokens=1, logprobs=True, top_logprobs=20)
        else:
            kwargs.update(max_tokens=8)
        for attempt in range(self.max_retries + 1):
            try:
                raw = self.client.chat.completions.with_raw_response.create(**kwargs)
                break
            except FATAL as e:
                raise JudgeBackendError(f"{self.base_url or 'OpenAI'} refused model {self.model!r} "
                                        f"({e.status_code}): check the key, the model name and the base URL") from None
            except RETRYABLE as e:
                if attempt == self.max_retries:
                    raise JudgeBackendError(f"{self.base_url or 'OpenAI'}: gave up after {attempt + 1} tries ({e})") from None
                with self._lock:
                    self.retries += 1
                time.sleep(random.uniform(0, self.backoff_s * 2**attempt))
        choice = self._choice(raw)
        if self.parse != "logprobs":
            return None, choice.message.content
        if choice.logprobs is None or not choice.logprobs.content:
            raise JudgeBackendError(f"{self.base_url or 'OpenAI'} returned no logprobs for model {self.model!r}; "
                                    "use a server that supports them or set `parse: generate` in the preset")
        top_logprobs = choice.logprobs.content[0].top_logprobs
        if not top_logprobs:
            raise JudgeBackendError(f"{self.base_url or 'OpenAI'} returned no top_logprobs for model {self.model!r}; "
                                    "use a server that supports them or set `parse: generate` in the preset")
        if len(top_logprobs) < len(labels):
            raise JudgeBackendError(
                f"{self.base_url or 'OpenAI'} returned {len(top_logprobs)} top logprobs for model {self.model!r}, "
                f"fewer than the {len(labels)} labels a judgement reads; let the server return 20 (vLLM: "
                "--max-logprobs 20) or set `parse: generate` in the preset")
        top: dict[str, float] = {}
        for t in top_logprobs:  # "7" before " 7" when both come back, as HFJudge reads the bare label first
            label = t.token.strip()
            if label not in top or t.token == label:
                top[label] = math.exp(t.logprob)
        return [top.get(label, 0.0) for label in labels], choice.message.content

    def _malformed(self, what: str, body: str) -> JudgeBackendError:
        url = self.base_url or "https://api.openai.com/v1"
        return JudgeBackendError(f"{url}/chat/completions answered {what} (first 80 characters: {body[:80]!r}); "
                                 f"check that the base URL is an OpenAI-compatible API (it usually ends in /v1) "
                                 f"serving model {self.model!r}")

    def _choice(self, raw):
        """The first choice of a chat completion, after checking the body is one: a server that answers 200 with
        HTML, an empty object or no choices gets one clear line, not a parser's traceback."""
        body = raw.text
        try:
            data = json.loads(body)
        except ValueError:
            raise self._malformed("something that is not JSON", body) from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
            raise self._malformed("JSON without a list of choices", body)
        first = data["choices"][0]
        if not isinstance(first, dict) or not isinstance(first.get("message"), dict):
            raise self._malformed("a choice without a message", body)
        try:
            return raw.parse().choices[0]
        except Exception as e:  # the client's own model validation: report it as a malformed answer
            raise self._malformed(f"a completion the client cannot read ({type(e).__name__})", body) from None

    def _ask(self, texts: Sequence[str], labels: Sequence[str]) -> list[tuple[list[float] | None, str | None]]:
        pool = ThreadPoolExecutor(self.concurrency)
        try:
            return list(tqdm(pool.map(lambda t: self._request(t, labels), texts), total=len(texts),
                             disable=not self.progress, desc=self.id, unit="prompt"))
        finally:  # on Ctrl-C or an error, requests not yet sent are dropped, not waited for
            pool.shutdown(wait=False, cancel_futures=True)
