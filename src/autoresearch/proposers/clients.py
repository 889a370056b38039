"""Chat clients over plain httpx: OpenAI chat-completions and Anthropic Messages.

No SDK: two small JSON shapes do not justify two heavy dependencies, and one code
path for retries keeps the behaviour identical across providers. Request and
response shapes, and the retry rules, follow the official ``openai`` and
``anthropic`` Python SDKs.

Error policy, decided once here (as the SDKs do):

- 408, 409, 429, 5xx (529 "overloaded" included), timeouts and connection
  errors are transient: retry with exponential backoff (``backoff`` seconds,
  doubling, jittered, capped). A ``retry-after-ms`` or ``retry-after`` header is
  waited out instead, and ``x-should-retry: true|false`` overrides the status.
  When retries run out, ``ApiUnavailable`` is raised; the proposer turns it into
  an ``invalid`` proposal, so an overnight blip costs one experiment.
- A 429 ``insufficient_quota`` (OpenAI) or a "credit balance is too low" 400
  (Anthropic) is permanent: ``ProposerError`` at once, naming the key's variable.
- A 400 that names an unsupported parameter is learned from, once per client:
  ``max_tokens`` becomes ``max_completion_tokens`` (OpenAI reasoning models),
  and ``temperature`` is dropped (reasoning models, Claude Sonnet 5 and later).
  Known reasoning families (o1/o3/o4, gpt-5...) get this from the first call.
- Any other 4xx can never succeed by retrying: ``ProposerError`` with the fix.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from autoresearch.proposers.base import ProposerError
from autoresearch.proposers.prices import Price, parse_prices
from autoresearch.proposers.responses import Reply, ShapeError, parse_anthropic, parse_openai

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_BASE_URLS", "DEFAULT_KEY_ENV", "ApiUnavailable",
           "ChatClient", "Message", "Price", "Reply", "parse_prices", "retry_after"]

log = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
}
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
MAX_WAIT = 120.0  # never sleep longer than this between tries, whatever the server says
RETRY_STATUS = frozenset({408, 409, 429})  # plus every 5xx
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# OpenAI reasoning families: max_completion_tokens, and only the default temperature.
_REASONING_MODEL = re.compile(r"(^|/)(o\d|gpt-5)", re.IGNORECASE)
_NO_CREDIT = re.compile(r"insufficient_quota|exceeded your current quota|credit balance is too "
                        r"low|insufficient (credits|balance)", re.IGNORECASE)


def is_reasoning_model(model: str) -> bool:
    return bool(_REASONING_MODEL.search(model))


class ApiUnavailable(RuntimeError):
    """The endpoint kept failing transiently (429/5xx/timeout) through every retry."""


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str


@dataclass
class ChatClient:
    """One provider endpoint. ``sleep`` is injectable so tests need not wait.

    ``complete(system, messages, max_tokens=None)`` returns a ``Reply``; what the
    client learns from a 400 (``token_param``, ``send_temperature``) is kept for
    every later call.
    """

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
    reasoning_effort: str | None = None  # OpenAI reasoning models only
    token_param: str = ""  # "max_tokens" | "max_completion_tokens"; "" = decide by model
    send_temperature: bool = True
    learned: list[str] = field(default_factory=list)  # what 400s taught us, for the log
    _http: httpx.Client | None = None

    def __post_init__(self) -> None:
        if not self.token_param:
            reasoning = self.provider == "openai" and is_reasoning_model(self.model)
            self.token_param = "max_completion_tokens" if reasoning else "max_tokens"
            if reasoning and self.temperature is not None:
                self.send_temperature = False
                log.warning("temperature=%g is not sent: %s is a reasoning model and accepts "
                            "only its default.", self.temperature, self.model)

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=30.0))
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # ------------------------------------------------------------ request shapes

    def _request(self, system: str, messages: Sequence[Message],
                 max_tokens: int) -> tuple[str, dict, dict]:
        url = self.base_url.rstrip("/")
        headers = {"content-type": "application/json"}
        body: dict[str, Any] = {"model": self.model}
        if self.temperature is not None and self.send_temperature:
            body["temperature"] = self.temperature
        # Never an empty turn: Anthropic rejects it, and it tells the model nothing.
        chat = [{"role": m.role, "content": m.content} for m in messages if m.content.strip()]
        if self.provider == "anthropic":
            url += "/messages"
            headers["anthropic-version"] = ANTHROPIC_VERSION
            if self.api_key:
                headers["x-api-key"] = self.api_key
            body["max_tokens"] = max_tokens
            body["system"] = system
            body["messages"] = chat
        else:
            url += "/chat/completions"
            if self.api_key:
                headers["authorization"] = f"Bearer {self.api_key}"
            body[self.token_param] = max_tokens
            if self.reasoning_effort:
                body["reasoning_effort"] = self.reasoning_effort
            body["messages"] = [{"role": "system", "content": system}, *chat]
        return url, headers, body

    def _parse(self, data: Any) -> Reply:
        try:
            return parse_anthropic(data) if self.provider == "anthropic" else parse_openai(data)
        except (ShapeError, KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise ApiUnavailable(f"unexpected response shape from {self.base_url} ({exc}): "
                                 f"{str(data)[:300]}") from exc

    # ------------------------------------------------------------ the call

    def complete(self, system: str, messages: Sequence[Message], *,
                 max_tokens: int | None = None) -> Reply:
        limit = max_tokens or self.max_tokens
        last = ""
        attempt = 0
        relearned = 0
        while True:
            attempt += 1
            url, headers, body = self._request(system, messages, limit)
            wait: float | None = None
            retry = True
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
                        reply = self._parse(data)
                        return replace(reply, model=reply.model or self.model, attempts=attempt,
                                       max_tokens=limit)
                else:
                    if resp.status_code == 400 and relearned < 2 and self._learn(resp):
                        relearned += 1  # the same call again, fixed; not a retry
                        attempt -= 1
                        continue
                    last = f"HTTP {resp.status_code}: {_error_text(resp)}"
                    retry = self._should_retry(resp)
                    wait = retry_after(resp.headers)
            if not retry:
                raise ApiUnavailable(f"{self.provider} API at {self.base_url} failed and asked "
                                     f"not to be retried (x-should-retry: false); {last}")
            if attempt > self.retries:
                break
            if wait is None:
                # Full jitter spreads parallel runs apart instead of retrying in lock-step.
                wait = self.backoff * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
            self.sleep(min(wait, MAX_WAIT))
        raise ApiUnavailable(f"{self.provider} API at {self.base_url} failed "
                             f"{self.retries + 1} times; last error: {last}")

    def _should_retry(self, resp: httpx.Response) -> bool:
        """True: retry; False: give up on this call (not fatal); raises when fatal."""
        code = resp.status_code
        if _NO_CREDIT.search(_error_text(resp, code=True)):
            raise ProposerError(self._no_credit_message(resp))
        hint = resp.headers.get("x-should-retry", "").strip().lower()
        transient = code in RETRY_STATUS or code >= 500
        if hint == "true":
            return True
        if hint == "false":
            if transient:
                return False
            raise ProposerError(self._fatal_message(resp))
        if transient:
            return True
        raise ProposerError(self._fatal_message(resp))

    def _learn(self, resp: httpx.Response) -> bool:
        """Adapt to a 400 that names an unsupported parameter; True if the call may be
        sent again. Remembered for every later call of this client."""
        err = _error_dict(resp)
        param = str(err.get("param") or "")
        text = f"{param} {err.get('code') or ''} {err.get('message') or ''}".lower()
        if (self.provider == "openai" and self.token_param == "max_tokens"
                and (param == "max_tokens" or "max_completion_tokens" in text)):
            self.token_param = "max_completion_tokens"
            self.learned.append("sends max_completion_tokens (the model rejected max_tokens)")
        elif (self.send_temperature and self.temperature is not None and "temperature" in text
              and (param == "temperature" or "unsupported" in text or "not support" in text
                   or "only the default" in text)):
            self.send_temperature = False
            self.learned.append(f"drops temperature={self.temperature:g} (the model accepts "
                                "only its default)")
        else:
            return False
        log.warning("%s %s: %s", self.provider, self.model, self.learned[-1])
        return True

    def _no_credit_message(self, resp: httpx.Response) -> str:
        return (f"{self.provider} API at {self.base_url}: the account behind {self.key_env} has "
                f"no quota or credit left (HTTP {resp.status_code}: {_error_text(resp)}). "
                "This is not retried. Add credit or raise the limit in the provider's billing "
                f"settings, or set {self.key_env} to a key of an account that has some.")

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
                f"{self.model!r}, max_tokens={self.max_tokens}, temperature and "
                "reasoning_effort in [proposer].")


def _error_dict(resp: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of both APIs: OpenAI {message, type, param, code};
    Anthropic {"type": "error", "error": {type, message}}."""
    try:
        data = resp.json()
    except ValueError:
        return {}
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def _error_text(resp: httpx.Response, code: bool = False) -> str:
    err = _error_dict(resp)
    if err:
        text = str(err.get("message") or err)[:300]
        return f"{err.get('code') or ''} {err.get('type') or ''} {text}" if code else text
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason_phrase
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])[:300]
    return str(data)[:300]


def retry_after(headers: httpx.Headers | dict[str, str] | str | None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (delta-seconds or an
    HTTP date). A bare string is read as a Retry-After value."""
    if headers is None:
        return None
    if isinstance(headers, str):
        headers = {"retry-after": headers}
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lower.get("retry-after")
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
