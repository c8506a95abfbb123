"""A failure inside the worker is the same exception from either backend: the local one (the
worker's code in this process) and RunPod's (the real handler behind the local endpoint, over
HTTP). Both carry it as gpu_worker.errors' wire form, so a chunk is retried on both or on
neither, whatever words its message happens to hold."""

import errno
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest

from gpu_worker.best_of_n import BestOfN
from gpu_worker.errors import InputError, NarratorError, PermanentError, TransientError
from gpu_worker.handler import handle
from gpu_worker.schema import GenerateRequest
from gpu_worker.settings import WorkerSettings
from local_endpoint.server import Endpoint, EndpointConfig
from tasks.backends import Backend
from tasks.backends.local import LocalBackend
from tasks.backends.runpod import RunPodBackend
from tasks.settings import NarratorSettings

KEY = "test-key-errors"
REQUEST = GenerateRequest(text="The tide came in over the rocks.", n_candidates=1)


class OutOfMemoryError(RuntimeError):
    """What torch.cuda raises when the GPU is full (matched by its name, as torch's is)."""


class AcceleratorError(RuntimeError):
    """What torch 2.8+ raises for a lost CUDA context (a RuntimeError subclass, as torch's)."""


class FailingEngine:
    """The real embedded engine, except that synthesis raises `error` (a fault drill)."""

    def __init__(self, engine: Any, error: BaseException) -> None:
        self._engine, self._error = engine, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def synthesize_batch(self, request: GenerateRequest, seeds: list[int]) -> list[np.ndarray]:
        raise self._error


FAILURES = {
    "CUDA out of memory": (
        OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
        TransientError,
        "out_of_memory",
    ),
    "broken CUDA context": (
        RuntimeError("CUDA error: device-side assert triggered"),
        TransientError,
        "cuda_error",
    ),
    "torch 2.8's AcceleratorError": (
        AcceleratorError("CUDA error: an illegal memory access was encountered"),
        TransientError,
        "cuda_error",
    ),
    "cuBLAS through torch": (
        RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle)`"),
        TransientError,
        "cuda_error",
    ),
    "cuDNN through torch": (
        RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"),
        TransientError,
        "cuda_error",
    ),
    "CTranslate2 (Whisper) losing the GPU": (
        RuntimeError("CUDA failed with error unspecified launch failure"),
        TransientError,
        "cuda_error",
    ),
    "CTranslate2 out of GPU memory": (
        RuntimeError("CUDA failed with error out of memory"),
        TransientError,
        "out_of_memory",
    ),
    # a bug that mentions CUDA in passing is not a lost context
    "a shape bug on the GPU": (
        RuntimeError("Expected all tensors to be on the same device, cuda:0 and cpu"),
        PermanentError,
        "internal_error",
    ),
    "a full disk on the worker": (
        OSError(errno.ENOSPC, "No space left on device", "/runpod-volume/voices/ab12.wav"),
        TransientError,
        "disk_full",
    ),
    "our own transient": (TransientError("engine still warming up"), TransientError, "transient"),
    # a bug whose message happens to say "timed out" is not worth a retry
    "a bug that says timed out": (
        ValueError("decoder timed out on an empty prompt"),
        PermanentError,
        "internal_error",
    ),
    "a bug": (ZeroDivisionError("division by zero"), PermanentError, "internal_error"),
}


def local_backend(worker: BestOfN, error: BaseException | None) -> Backend:
    engine = worker.engine if error is None else FailingEngine(worker.engine, error)
    return LocalBackend(WorkerSettings(), 1, load=lambda _: BestOfN(engine, worker.validator))  # type: ignore[arg-type]


@pytest.fixture
def runpod_backend(
    serve: Callable[[Any], str],
) -> Callable[[BestOfN, BaseException | None], Backend]:
    def connect(worker: BestOfN, error: BaseException | None) -> Backend:
        engine = worker.engine if error is None else FailingEngine(worker.engine, error)
        faulty = BestOfN(engine, worker.validator)  # type: ignore[arg-type]
        endpoint = Endpoint(EndpointConfig(api_key=KEY), [partial(handle, worker=faulty)])
        settings = NarratorSettings(
            endpoint_limit="",
            backend="runpod",
            runpod_endpoint_id="local",
            runpod_base_url=f"{serve(endpoint.app)}/v2",
        )
        return RunPodBackend(settings, KEY, WorkerSettings())

    return connect


def raised(backend: Backend, request: GenerateRequest) -> NarratorError:
    with pytest.raises(NarratorError) as caught:
        backend.generate(request)
    return caught.value


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
def test_a_worker_failure_is_classified_alike_by_both_backends(
    failure: str, worker: BestOfN, runpod_backend: Callable[..., Backend]
) -> None:
    error, kind, code = FAILURES[failure]
    local = raised(local_backend(worker, error), REQUEST)
    remote = raised(runpod_backend(worker, error), REQUEST)
    for found in (local, remote):
        assert type(found) is kind, (found, type(found))
        assert found.code == code
        assert str(error) in str(found)
    assert "FAILED on the worker" in str(remote)


def test_bad_input_is_an_input_error_on_both_backends(
    worker: BestOfN, runpod_backend: Callable[..., Backend]
) -> None:
    unknown = REQUEST.model_copy(update={"voice": "nobody"})
    for backend in (local_backend(worker, None), runpod_backend(worker, None)):
        found = raised(backend, unknown)
        assert type(found) is InputError and found.code == "invalid_input"
        assert "voice 'nobody' is not available" in str(found)


LOST_GPU = [name for name, (_, _, code) in FAILURES.items() if code == "cuda_error"]


@pytest.mark.parametrize("failure", LOST_GPU, ids=LOST_GPU)
def test_a_lost_gpu_asks_runpod_for_a_new_worker(failure: str, worker: BestOfN) -> None:
    """Every later job on a worker whose CUDA context is gone fails the same way."""
    faulty = BestOfN(FailingEngine(worker.engine, FAILURES[failure][0]), worker.validator)  # type: ignore[arg-type]
    answer = handle({"id": "j1", "input": REQUEST.model_dump()}, faulty)
    assert answer["refresh_worker"] is True


@pytest.mark.parametrize("failure", sorted(set(FAILURES) - set(LOST_GPU)))
def test_other_failures_keep_the_worker(failure: str, worker: BestOfN) -> None:
    faulty = BestOfN(FailingEngine(worker.engine, FAILURES[failure][0]), worker.validator)  # type: ignore[arg-type]
    assert "refresh_worker" not in handle({"id": "j2", "input": REQUEST.model_dump()}, faulty)


def test_chunks_waiting_for_the_local_worker_are_served_in_reading_order(
    worker: BestOfN,
) -> None:
    """One worker, busy; chunks 5, 3 and 1 ask for it in that order: 1 is served first,
    then 3, then 5 (so a chapter's and a stream's chunks finish about in order)."""
    from tasks.backends.order import in_reading_order

    backend = LocalBackend(WorkerSettings(), 1, load=lambda _: worker)
    served: list[int] = []
    request = GenerateRequest(text="The gulls rose.", n_candidates=1, max_retries=0)
    backend.generate(request)  # the worker exists

    def ask(index: int) -> None:
        with in_reading_order(index):
            backend.generate(request)
        served.append(index)

    held = backend._acquire()  # busy: everyone else waits
    threads = []
    for index in (5, 3, 1):
        threads.append(threading.Thread(target=ask, args=(index,)))
        threads[-1].start()
        time.sleep(0.2)  # each is waiting before the next asks
    backend._idle.put(held)
    for thread in threads:
        thread.join(timeout=60)
    assert served == [1, 3, 5]
