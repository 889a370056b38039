"""Read a chat answer out of any response shape the servers send today.

Shapes follow the official SDK types (``openai.types.chat.ChatCompletion``,
``anthropic.types.Message``) plus what OpenAI-compatible servers add or leave
out: content as a string or a list of parts, ``reasoning_content``/``reasoning``
drafts (vLLM, DeepSeek, Ollama), no ``usage`` at all (some local servers), and
inline ``<think>...</think>`` drafts (Qwen and DeepSeek distills). Anthropic
answers may open with ``thinking``/``redacted_thinking`` blocks.

Stop reasons are normalised to ``stop``, ``length`` (cut off at the token
limit), ``refusal`` or the server's own word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class ShapeError(ValueError):
    """The body is JSON but not a chat answer we can read."""


@dataclass(frozen=True)
class Reply:
    text: str  # the answer, drafts removed
    input_tokens: int  # the whole prompt, cache reads and writes included
    output_tokens: int  # reasoning tokens included (they are billed as output)
    model: str  # as reported by the server (may differ from the requested alias)
    attempts: int  # HTTP attempts this reply took, retries included
    cached_tokens: int = 0  # prompt tokens read from the provider's cache
    cache_write_tokens: int = 0  # Anthropic: prompt tokens written to the cache
    reasoning_tokens: int = 0  # OpenAI: hidden reasoning, part of output_tokens
    stop: str = "stop"  # stop | length | refusal | the server's own reason
    thinking: str = ""  # drafts: thinking blocks, reasoning_content, <think> text
    usage_reported: bool = True  # False when the server sent no token counts
    max_tokens: int = 0  # the answer limit this call was made with


_THINK = re.compile(r"<think(?:ing)?>(.*?)</think(?:ing)?>", re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(r"<think(?:ing)?>", re.IGNORECASE)
_CLOSE = re.compile(r"</think(?:ing)?>", re.IGNORECASE)


def strip_think(text: str) -> tuple[str, str]:
    """(answer, drafts): ``<think>`` blocks removed. A close tag with no opening one
    (templates that pre-fill ``<think>``) ends a draft that began at the start; an
    opening tag that never closes (cut off) makes the rest a draft."""
    if not (_OPEN.search(text) or _CLOSE.search(text)):
        return text, ""
    drafts = [m.group(1).strip() for m in _THINK.finditer(text)]
    answer = _THINK.sub("", text)
    close = _CLOSE.search(answer)
    if close:
        drafts.insert(0, answer[:close.start()].strip())
        answer = answer[close.end():]
    opened = _OPEN.search(answer)
    if opened:
        drafts.append(answer[opened.end():].strip())
        answer = answer[:opened.start()]
    return answer.strip("\n"), "\n\n".join(d for d in drafts if d)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _parts_text(content: Any) -> str:
    """OpenAI content: a string, null, or a list of parts ({"type": "text", "text": ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and part.get("type", "text") in ("text", "output_text"):
                text = part.get("text")
                out.append(text if isinstance(text, str) else str((text or {}).get("value", "")))
        return "".join(out)
    raise ShapeError(f"message.content is a {type(content).__name__}")


def parse_openai(data: Any) -> Reply:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ShapeError("no `choices` list")
    if not data["choices"]:
        raise ShapeError("`choices` is empty")
    choice = data["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise ShapeError("choices[0] has no `message` object")
    raw = _parts_text(message.get("content"))
    text, inline = strip_think(raw)
    drafts = [d for d in (message.get("reasoning_content"), message.get("reasoning"), inline)
              if isinstance(d, str) and d.strip()]
    finish = str(choice.get("finish_reason") or "stop")
    refusal = message.get("refusal")
    stop = {"length": "length", "content_filter": "refusal"}.get(finish, finish)
    if isinstance(refusal, str) and refusal.strip():
        stop, text = "refusal", text or refusal
    usage = data.get("usage")
    u = usage if isinstance(usage, dict) else {}
    details_in = u.get("prompt_tokens_details") or {}
    details_out = u.get("completion_tokens_details") or {}
    return Reply(
        text=text, input_tokens=_int(u.get("prompt_tokens")),
        output_tokens=_int(u.get("completion_tokens")), model=str(data.get("model") or ""),
        attempts=1,
        cached_tokens=_int(details_in.get("cached_tokens")) if isinstance(details_in, dict) else 0,
        reasoning_tokens=(_int(details_out.get("reasoning_tokens"))
                          if isinstance(details_out, dict) else 0),
        stop=stop, thinking="\n\n".join(drafts), usage_reported=isinstance(usage, dict))


def parse_anthropic(data: Any) -> Reply:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise ShapeError("no `content` list")
    texts, drafts = [], []
    for block in data["content"]:
        if not isinstance(block, dict):
            raise ShapeError("a content block is not an object")
        kind = block.get("type", "text")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            drafts.append(str(block.get("thinking") or ""))
        elif kind == "redacted_thinking":
            drafts.append("(redacted thinking)")
    text, inline = strip_think("".join(texts))
    if inline:
        drafts.append(inline)
    stop_reason = str(data.get("stop_reason") or "end_turn")
    stop = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
            "model_context_window_exceeded": "length"}.get(stop_reason, stop_reason)
    usage = data.get("usage")
    u = usage if isinstance(usage, dict) else {}
    cached, written = _int(u.get("cache_read_input_tokens")), _int(
        u.get("cache_creation_input_tokens"))
    return Reply(
        text=text, input_tokens=_int(u.get("input_tokens")) + cached + written,
        output_tokens=_int(u.get("output_tokens")), model=str(data.get("model") or ""),
        attempts=1, cached_tokens=cached, cache_write_tokens=written, stop=stop,
        thinking="\n\n".join(d for d in drafts if d.strip()),
        usage_reported=isinstance(usage, dict))
