"""Server-sent events of a streamed ``peer.chat`` answer.

The server sends ``data: {"delta": {"content": "<chunk>"}, "done": false}`` events and ends with
``data: {"done": true}``. Only ``data:`` lines are read (one optional space after the colon is
dropped); ``event:``, ``id:``, ``retry:``, comment (``:``) and blank lines are ignored. Lines
end with LF, CRLF or CR, possibly split across network chunks, and multi-byte UTF-8 characters
may be split too. A payload that is not a JSON object is skipped. Content carried by the
``done`` event is not a chunk. An ``{"error": ...}`` event raises :class:`StreamError`. Without a
``done`` event the stream ends when the connection does.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Any

import httpx

from ._errors import StreamError, from_transport_error

__all__ = ["AsyncChatStream", "ChatStream"]

_log = logging.getLogger("rapport")
_EOL = re.compile(r"\r\n|\r|\n")


class SSELineDecoder:
    """Splits a byte stream into text lines, incrementally."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes) -> list[str]:
        """The complete lines found once ``data`` is added (line endings removed)."""
        text = self._pending + self._decoder.decode(data)
        lines: list[str] = []
        start = 0
        for match in _EOL.finditer(text):
            if match.group() == "\r" and match.end() == len(text):
                break  # a CR at the very end may be the first half of a CRLF
            lines.append(text[start : match.start()])
            start = match.end()
        self._pending = text[start:]
        return lines

    def flush(self) -> list[str]:
        """The lines left at the end of the stream (a last line may lack its line ending)."""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if not text:
            return []
        lines = _EOL.split(text)
        if lines[-1] == "":
            lines.pop()
        return lines


def parse_data_line(line: str) -> dict[str, Any] | None:
    """The JSON object of a ``data:`` line; ``None`` for any other line or payload."""
    if not line.startswith("data:"):
        return None
    payload = line[5:]
    if payload.startswith(" "):
        payload = payload[1:]
    try:
        value = json.loads(payload)
    except ValueError:
        _log.warning("Skipping an SSE data line that is not JSON: %.200r", payload)
        return None
    return value if isinstance(value, dict) else None


_DONE = object()


def interpret_event(event: dict[str, Any]) -> str | object | None:
    """A text chunk, ``_DONE`` for the terminating event, or ``None`` for nothing to yield."""
    error = event.get("error")
    if error:
        raise StreamError(str(error))
    if event.get("done"):
        return _DONE
    delta = event.get("delta")
    if isinstance(delta, dict):
        content = delta.get("content")
        if isinstance(content, str) and content:
            return content
    return None


class _StreamBase:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._parts: list[str] = []
        self._done = False

    @property
    def response(self) -> httpx.Response:
        """The underlying streamed HTTP response."""
        return self._response

    @property
    def text(self) -> str:
        """The chunks received so far, joined."""
        return "".join(self._parts)

    @property
    def done(self) -> bool:
        """True once the server's ``done`` event (or the end of the stream) was read."""
        return self._done

    def _handle(self, line: str) -> str | object | None:
        event = parse_data_line(line)
        if event is None:
            return None
        result = interpret_event(event)
        if isinstance(result, str):
            self._parts.append(result)
        return result


class ChatStream(_StreamBase):
    """A streamed dialectic answer: iterate to get text chunks as they arrive.

    Use it as a context manager, or iterate to the end, so the connection is released::

        with peer.chat("What does Bob like?", stream=True) as stream:
            for chunk in stream:
                print(chunk, end="")
    """

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response)
        self._iterator = self._chunks()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._iterator)

    def _chunks(self) -> Generator[str, None, None]:
        decoder = SSELineDecoder()
        try:
            for raw in self._response.iter_bytes():
                for line in decoder.feed(raw):
                    result = self._handle(line)
                    if result is _DONE:
                        return
                    if isinstance(result, str):
                        yield result
            for line in decoder.flush():
                result = self._handle(line)
                if result is _DONE:
                    return
                if isinstance(result, str):
                    yield result
        except httpx.TransportError as exc:
            raise from_transport_error(exc) from exc
        finally:
            self._done = True
            self._response.close()

    def until_done(self) -> str:
        """Read the rest of the stream and return the whole answer."""
        for _ in self:
            pass
        return self.text

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._iterator.close()
        self._response.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncChatStream(_StreamBase):
    """A streamed dialectic answer for the async client: ``async for chunk in stream``."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response)
        self._iterator = self._chunks()

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        return await self._iterator.__anext__()

    async def _chunks(self) -> AsyncGenerator[str, None]:
        decoder = SSELineDecoder()
        try:
            async for raw in self._response.aiter_bytes():
                for line in decoder.feed(raw):
                    result = self._handle(line)
                    if result is _DONE:
                        return
                    if isinstance(result, str):
                        yield result
            for line in decoder.flush():
                result = self._handle(line)
                if result is _DONE:
                    return
                if isinstance(result, str):
                    yield result
        except httpx.TransportError as exc:
            raise from_transport_error(exc) from exc
        finally:
            self._done = True
            await self._response.aclose()

    async def until_done(self) -> str:
        """Read the rest of the stream and return the whole answer."""
        async for _ in self:
            pass
        return self.text

    async def close(self) -> None:
        """Stop reading and release the connection."""
        await self._iterator.aclose()
        await self._response.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
