"""backend=runpod against the local RunPod-compatible endpoint gives the same chapter as
backend=local: same seeds, same chunk audio."""

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from flows.chapter import NarrationOptions, narrate_chapter
from flows.services import configured
from gpu_worker.best_of_n import BestOfN
from gpu_worker.handler import handle
from gpu_worker.schema import GenerationParams
from local_endpoint.server import Endpoint, EndpointConfig
from tasks.settings import NarratorSettings

pytestmark = pytest.mark.usefixtures("prefect_server")

CHAPTER = """# Two Roads

The light came round once every ten seconds. It had done so since 1951.

"Is it still worth it?" asked Mr. Venn. It cost $18,400 a year.

She said it was worth every cent, and went home at 9 p.m.
"""


def test_runpod_and_local_backends_make_the_same_chapter(
    tmp_path: Path,
    worker: BestOfN,
    serve: Callable[[Any], str],
) -> None:
    endpoint = Endpoint(EndpointConfig(api_key="flow-key"), [partial(handle, worker=worker)])
    base = serve(endpoint.app)
    source = tmp_path / "two-roads.md"
    source.write_text(CHAPTER)
    options = NarrationOptions(generation=GenerationParams(n_candidates=2, seed=11))
    settings = NarratorSettings(cache_dir=str(tmp_path / "cache"))

    with configured(settings):
        local = narrate_chapter(str(source), str(tmp_path / "local"), None, options)
    on_runpod = settings.model_copy(
        update={
            "backend": "runpod",
            "runpod_endpoint_id": "local",
            "runpod_base_url": f"{base}/v2",
            "runpod_api_key": SecretStr("flow-key"),
        }
    )
    with configured(on_runpod):
        remote = narrate_chapter(str(source), str(tmp_path / "runpod"), None, options)

    assert remote.cache_hits == 0  # another backend identity: nothing reused from local
    assert endpoint.counts["completed"] == remote.chunks == local.chunks
    assert Path(remote.audio).read_bytes() == Path(local.audio).read_bytes()
    for output in (remote.metadata, remote.segments, remote.subtitles):
        assert "flow-key" not in Path(output).read_text()  # the API key is never written out


def test_the_endpoint_limit_caps_jobs_in_flight_for_every_run(
    tmp_path: Path,
    worker: BestOfN,
    serve: Callable[[Any], str],
) -> None:
    from prefect.client.orchestration import get_client

    # Two worker slots on the endpoint, but the Prefect limit allows one job at a time.
    endpoint = Endpoint(
        EndpointConfig(api_key="k"),
        [partial(handle, worker=worker), partial(handle, worker=worker)],
    )
    base = serve(endpoint.app)
    source = tmp_path / "two-roads.md"
    source.write_text(CHAPTER)
    settings = NarratorSettings(
        backend="runpod",
        runpod_endpoint_id="local",
        runpod_base_url=f"{base}/v2",
        runpod_api_key=SecretStr("k"),
        runpod_concurrency=1,
        endpoint_limit="test-endpoint",
        cache_dir=str(tmp_path / "cache"),
    )
    options = NarrationOptions(generation=GenerationParams(n_candidates=1, max_retries=0))

    with configured(settings):
        result = narrate_chapter(str(source), str(tmp_path / "out"), None, options)

    jobs = sorted(endpoint.jobs.values(), key=lambda j: j.created)
    assert len(jobs) == result.chunks > 2
    for earlier, later in itertools.pairwise(jobs):
        assert earlier.finished is not None and earlier.finished <= later.created
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("test-endpoint")
        assert (limit.limit, limit.active_slots) == (1, 0)  # created at flow start, all released

    # Resizing is idempotent: the next run with another setting updates the same limit.
    with configured(settings.model_copy(update={"runpod_concurrency": 4})):
        narrate_chapter(str(source), str(tmp_path / "out"), None, options)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("test-endpoint").limit == 4


def test_an_old_lease_is_renewed_as_it_is_handed_on_not_given_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lease handed from job to job for longer than reuse_seconds is renewed on the
    Prefect server in the background; the slot is never given back in between, so the next
    job waits for nothing."""
    from prefect.client.orchestration import get_client

    from tasks.backends.runpod.slots import EndpointSlots

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name("renew-test", 2)
    slots = EndpointSlots("renew-test", lease_seconds=30)
    slots.reuse_seconds = 0.0  # every lease is old enough to renew

    def taken() -> int:
        with get_client(sync_client=True) as client:
            return client.read_global_concurrency_limit_by_name("renew-test").active_slots

    async def jobs() -> tuple[int, int, float]:
        async with slots.held():  # a job still in flight
            async with slots.held():
                pass  # a second job ends: its lease is kept for the next one, renewed
            assert len(slots._idle) == 1 and len(slots._renewing) == 1
            await asyncio.gather(*slots._renewing)
            kept = await asyncio.to_thread(taken)
            before = time.monotonic()
            async with slots.held():  # the next job takes the kept lease
                handed_on = time.monotonic() - before
        return kept, await asyncio.to_thread(taken), handed_on

    with caplog.at_level(logging.WARNING, logger="narrator.runpod"):
        kept, after, handed_on = asyncio.run(jobs())
    assert not caplog.records  # the server accepted the renewal
    assert kept == 2  # both slots held across the hand-on
    assert after == 0  # the last job in flight gave every lease back
    assert handed_on < 0.5 * EndpointSlots.poll  # no call to the server: an idle lease
