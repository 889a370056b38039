"""Chat clients over plain httpx: OpenAI chat-completions and Anthropic Messages.

No SDK: two small JSON shapes do not justify two heavy dependencies, and one code
path for retries keeps the behaviour identical across providers.

Error policy, decided once here:

- 429, 5xx, timeouts and connection errors are transient: retry with
  exponential backoff (``backoff`` seconds, doubling, capped), and when the
  server sends ``Retry-After`` wait exactly that long instead. When retries
  run out, ``ApiUnavailable`` is raised; the proposer turns it into an
  ``invalid`` proposal, so an overnight blip costs one experiment, while a
  dead server trips the loop's consecutive-failure stop.
- 400/401/403/404 (and other 4xx) can never succeed by retrying, so they raise
  ``ProposerError`` with what to fix (the key's env var, the model, the URL).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from autoresearch.proposers.base import ProposerError

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
}
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
MAX_WAIT = 120.0  # never sleep longer than this between tries, whatever Retry-After says


class ApiUnavailable(RuntimeError):
    """The endpoint kept failing transiently (429/5xx/timeout) through every retry."""


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Reply:
    text: str
    input_tokens: int
    output_tokens: int
    model: str  # as reported by the server (may differ from the requested alias)
    attempts: int  # HTTP attempts this reply took, retries included


@dataclass
class ChatClient:
    """One provider endpoint. ``sleep`` is injectable so tests need not wait."""

    provider: str  # "openai" | "anthropic"
    model: str
    base_url: str
    api_key: str | None
    key_env: str
    max_tokens: int = 4096
    temperature: float | None = None
    timeout: float = 300.0
    retries: int = 5
    backoff: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    _http: httpx.Client | None = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=30.0))
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # ------------------------------------------------------------ request shapes

    def _request(self, system: str, messages: Sequence[Message]) -> tuple[str, dict, dict]:
        url = self.base_url.rstrip("/")
        headers = {"content-type": "application/json"}
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        chat = [{"role": m.role, "content": m.content} for m in messages]
        if self.provider == "anthropic":
            url += "/messages"
            headers["anthropic-version"] = ANTHROPIC_VERSION
            if self.api_key:
                headers["x-api-key"] = self.api_key
            body["system"] = system
            body["messages"] = chat
        else:
            url += "/chat/completions"
            if self.api_key:
                headers["authorization"] = f"Bearer {self.api_key}"
            body["messages"] = [{"role": "system", "content": system}, *chat]
        return url, headers, body

    def _parse(self, data: Any) -> tuple[str, int, int, str]:
        try:
            if self.provider == "anthropic":
                text = "".join(b.get("text", "") for b in data["content"]
                               if b.get("type", "text") == "text")
                usage = data.get("usage") or {}
                return (text, int(usage.get("input_tokens") or 0),
                        int(usage.get("output_tokens") or 0), str(data.get("model") or ""))
            text = data["choices"][0]["message"].get("content") or ""
            usage = data.get("usage") or {}
            return (text, int(usage.get("prompt_tokens") or 0),
                    int(usage.get("completion_tokens") or 0), str(data.get("model") or ""))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ApiUnavailable(f"unexpected response shape from {self.base_url}: "
                                 f"{str(data)[:300]}") from exc

    # ------------------------------------------------------------ the call

    def complete(self, system: str, messages: Sequence[Message]) -> Reply:
        url, headers, body = self._request(system, messages)
        last = ""
        for attempt in range(1, self.retries + 2):
            wait: float | None = None
            try:
                resp = self._client().post(url, headers=headers, json=body)
            except httpx.TimeoutException:
                last = f"timed out after {self.timeout:g}s"
            except httpx.TransportError as exc:
                last = f"connection failed: {exc}"
            else:
                if resp.status_code < 300:
                    try:
                        data = resp.json()
                    except ValueError:
                        last = f"HTTP {resp.status_code} with a body that is not JSON"
                    else:
                        text, tin, tout, model = self._parse(data)
                        return Reply(text, tin, tout, model or self.model, attempt)
                elif resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}: {_error_text(resp)}"
                    wait = retry_after(resp.headers.get("retry-after"))
                else:
                    raise ProposerError(self._fatal_message(resp))
            if attempt > self.retries:
                break
            if wait is None:
                # Full jitter spreads parallel runs apart instead of retrying in lock-step.
                wait = self.backoff * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
            self.sleep(min(wait, MAX_WAIT))
        raise ApiUnavailable(f"{self.provider} API at {self.base_url} failed "
                             f"{self.retries + 1} times; last error: {last}")

    def _fatal_message(self, resp: httpx.Response) -> str:
        code, detail = resp.status_code, _error_text(resp)
        where = f"{self.provider} API at {self.base_url}"
        if code in (401, 403):
            if not self.api_key:
                fix = f"set {self.key_env} (no key was sent)"
            else:
                fix = (f"check the key in {self.key_env} (or point [proposer] api_key_env "
                       "at the right variable) and that it may use this model")
            return f"{where} refused the request (HTTP {code}: {detail}). Fix: {fix}."
        if code == 404:
            return (f"{where} answered 404 ({detail}). Check base_url (OpenAI-compatible "
                    f"servers usually end in /v1) and that model {self.model!r} exists.")
        return (f"{where} rejected the request (HTTP {code}: {detail}). Check model "
                f"{self.model!r}, max_tokens={self.max_tokens} and temperature in [proposer].")


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason_phrase
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)[:300]
    if isinstance(err, str):
        return err[:300]
    return str(data)[:300]


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ---------------------------------------------------------------- cost


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


def parse_prices(value: Any) -> dict[str, Price]:
    """``{model = [in, out]}`` or ``{model = {input = x, output = y}}``, USD per 1M tokens."""
    if not isinstance(value, dict):
        raise ValueError("expected a table of model = [input_usd_per_mtok, output_usd_per_mtok]")
    out: dict[str, Price] = {}
    for model, p in value.items():
        if isinstance(p, dict) and set(p) <= {"input", "output"} and p:
            pair = [p.get("input", 0.0), p.get("output", 0.0)]
        elif isinstance(p, list | tuple) and len(p) == 2:
            pair = list(p)
        else:
            raise ValueError(f"{model}: expected [input, output] USD per million tokens, got {p!r}")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) and x >= 0
                   for x in pair):
            raise ValueError(f"{model}: prices must be non-negative numbers, got {p!r}")
        out[str(model)] = Price(float(pair[0]), float(pair[1]))
    return out
