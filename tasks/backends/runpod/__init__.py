"""The RunPod backend: chunks generated on a RunPod serverless endpoint, over its REST API.

client.py    RunPodBackend: /run, then /status until done; cancels what it leaves behind
window.py    AdaptiveLimit: this process's window of jobs in flight (halved on 429)
slots.py     EndpointSlots: the endpoint's Prefect global concurrency limit, shared
retry.py     Retry-After and jittered backoff
api_key.py   the API key, from the settings or a Prefect Secret block
"""

from tasks.backends.runpod.api_key import api_key
from tasks.backends.runpod.client import RunPodBackend

__all__ = ["RunPodBackend", "api_key"]
