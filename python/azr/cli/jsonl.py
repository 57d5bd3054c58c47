"""Serving JSON-lines requests: one answer line per request, in order, many at once."""

from __future__ import annotations

import io
import json
import math
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

import click

Handler = Callable[[str], dict[str, Any]]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def parse_request(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """A request object, or the reason the line is not one."""
    try:
        # NaN, Infinity and 1e400 would come back in the answer as what no JSON reader takes.
        request = json.loads(line, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    except RecursionError:
        return None, "not JSON this reader takes: nested too deeply"
    if not isinstance(request, dict):
        return None, "a request must be a JSON object"
    if not _valid_unicode(request):
        # A lone surrogate: a "\\ud800" escape, or bytes that are not UTF-8 read
        # from stdin. No sandbox call and no answer line could carry it.
        return None, "the request holds text that is not valid Unicode (a lone surrogate)"
    return request, None


def _valid_unicode(value: Any) -> bool:
    # A loop, not recursion: JSON nested deeper than the recursion limit still parses.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def stdin_lines() -> Iterable[str]:
    """Standard input's lines as text whatever the locale: bytes that are not
    UTF-8 become lone surrogates, which ``parse_request`` refuses line by line,
    instead of an error that would end the stream.

    Read from the descriptor itself, not through ``sys.stdin``: ``serve`` reads
    on a daemon thread, and one blocked inside a buffered reader holds its lock,
    so an interpreter shutting down on Ctrl-C aborted ("could not acquire lock
    for <stdin>") instead of exiting."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # no descriptor (a test's stdin)
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
    return _descriptor_lines(fd)


def _descriptor_lines(fd: int) -> Iterator[str]:
    pending = bytearray()
    while chunk := os.read(fd, 1 << 16):
        start = len(pending)
        pending += chunk
        end = pending.find(b"\n", start)
        begin = 0
        while end >= 0:
            yield pending[begin : end + 1].decode("utf-8", "surrogateescape")
            begin = end + 1
            end = pending.find(b"\n", begin)
        del pending[:begin]
    if pending:
        yield pending.decode("utf-8", "surrogateescape")


def serve(handle: Handler, source: Iterable[str], sink: IO[str], parallel: int) -> int:
    """Answer each non-blank line of ``source`` on ``sink``, in order.

    A reader thread submits requests as they arrive while this thread writes
    each answer as soon as it and all before it are ready, so both a pipe of
    thousands of requests and an interactive session work. ``parallel``
    requests are handled at once (a sandbox worker each: more would only
    share the cores, and a busy host can trip the wall-clock limit), and a few
    times as many wait read. ``handle`` should not raise; if it does, that
    line's answer is an ``invalid_request`` error. Returns the number of
    answers written; a failure to read raises ``click.ClickException``.
    """
    pending: queue.Queue[Future[dict[str, Any]] | None] = queue.Queue(maxsize=4 * parallel)
    failed: list[BaseException] = []
    answered = 0
    with ThreadPoolExecutor(max_workers=parallel) as pool:

        def read() -> None:
            try:
                for line in source:
                    if line.strip():
                        pending.put(pool.submit(handle, line))
            except Exception as exc:  # an unreadable stream: stop, and say so
                failed.append(exc)
            finally:
                pending.put(None)

        threading.Thread(target=read, name="azr-jsonl-reader", daemon=True).start()
        while (future := pending.get()) is not None:
            sink.write(_answer_line(future) + "\n")
            sink.flush()
            answered += 1
    if failed:
        raise click.ClickException(
            f"reading requests stopped after {answered} answers: {type(failed[0]).__name__}: {failed[0]}"
        )
    return answered


def _answer_line(future: Future[dict[str, Any]]) -> str:
    try:
        return json.dumps(future.result(), ensure_ascii=False, allow_nan=False)
    except Exception as exc:  # a handler bug: this line gets an answer all the same
        error = {"kind": "invalid_request", "message": f"{type(exc).__name__}: {exc}"}
        return json.dumps({"id": None, "ok": False, "error": error}, ensure_ascii=False)
