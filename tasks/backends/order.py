"""Which chunk a backend call is for, so a backend that queues calls can serve them in
reading order: a chapter's chunks (and a speech stream's) then finish about in order, and
the first audio is ready first. generate_chunk sets it around each call."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

reading_order: ContextVar[int] = ContextVar("reading_order", default=sys.maxsize)


@contextmanager
def in_reading_order(index: int) -> Iterator[None]:
    token = reading_order.set(index)
    try:
        yield
    finally:
        reading_order.reset(token)
