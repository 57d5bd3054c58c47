"""Serving JSON-lines requests: one answer line per request, in order, many at once."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

Handler = Callable[[str], dict[str, Any]]


def parse_request(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """A request object, or the reason the line is not one."""
    try:
        request = json.loads(line)
    except ValueError as exc:
        return None, f"not JSON: {exc}"
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


def serve(handle: Handler, source: IO[str], sink: IO[str], window: int) -> int:
    """Answer each non-blank line of ``source`` on ``sink``, in order.

    A reader thread submits requests as they arrive while this thread writes
    each answer as soon as it and all before it are ready, so both a pipe of
    thousands of requests and an interactive session work. ``handle`` must not
    raise. Returns the number of answers written.
    """
    pending: queue.Queue[Future[dict[str, Any]] | None] = queue.Queue(maxsize=window)
    answered = 0
    with ThreadPoolExecutor(max_workers=window) as pool:

        def read() -> None:
            try:
                for line in source:
                    if line.strip():
                        pending.put(pool.submit(handle, line))
            finally:
                pending.put(None)

        threading.Thread(target=read, name="azr-jsonl-reader", daemon=True).start()
        while (future := pending.get()) is not None:
            sink.write(json.dumps(future.result(), ensure_ascii=False) + "\n")
            sink.flush()
            answered += 1
    return answered
