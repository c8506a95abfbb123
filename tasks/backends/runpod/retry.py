"""When to call a RunPod API again: its Retry-After, else jittered exponential backoff."""

import random

import httpx


def retry_after(response: httpx.Response) -> float | None:
    try:
        return min(60.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def backoff(attempt: int) -> float:
    return min(10.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)
