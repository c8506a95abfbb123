"""Reference audio: fetched from a volume path, http(s) or S3, checked, resampled, cached."""

import asyncio
import io
import ipaddress
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import soundfile as sf

from gpu_worker.errors import InputError, TransientError
from gpu_worker.settings import WorkerSettings
from gpu_worker.voices import fingerprint, load_reference, reachable


def clip(seconds: float, rate: int = 24000, channels: int = 1, level: float = 0.2) -> bytes:
    """A voiced-like clip: a few harmonics under a syllable-rate envelope."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    mono = (level * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)).astype(np.float32)
    data = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture
def settings(tmp_path: Path) -> WorkerSettings:
    (tmp_path / "voices").mkdir()
    return WorkerSettings(voices_root=tmp_path / "voices", voice_cache_dir=tmp_path / "cache")


def test_a_volume_clip_is_checked_resampled_and_cached(settings: WorkerSettings) -> None:
    data = clip(5.0, rate=8000, channels=2)  # 8 kHz stereo: accepted, made mono at 24 kHz
    (settings.voices_root / "zen.wav").write_bytes(data)
    reference = load_reference("zen.wav", settings, 24000)
    assert reference.rate == 24000 and reference.samples.ndim == 1
    assert reference.seconds == pytest.approx(5.0, abs=0.01)
    assert reference.path.parent == settings.voice_cache_dir and reference.path.is_file()
    assert sf.info(reference.path).samplerate == 24000
    assert reference.sha256 == fingerprint("zen.wav", settings)
    (settings.voices_root / "zen.wav").unlink()
    (settings.voices_root / "copy.wav").write_bytes(data)  # same bytes, another name
    assert load_reference("copy.wav", settings, 24000).path == reference.path


def test_a_path_that_names_the_voices_folder_twice_says_which_name_to_use(
    settings: WorkerSettings,
) -> None:
    """The old deploy guide's `--voice voices/zen.wav` read voices/voices/zen.wav."""
    (settings.voices_root / "zen.wav").write_bytes(clip(5.0))
    twice = r"no such file under .*voices \(paths are relative to that folder: use 'zen.wav'\)"
    with pytest.raises(InputError, match=twice):
        load_reference("voices/zen.wav", settings, 24000)
    with pytest.raises(InputError, match=r"'voices/nobody.wav': no such file under [^(]*$"):
        load_reference("voices/nobody.wav", settings, 24000)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: clip(1.0), r"lasts 1\.0 s; a voice clip must last 3-60 s"),
        (lambda: clip(61.0), r"lasts 61\.0 s"),
        (lambda: clip(5.0, level=0.0), "is silent"),
        (lambda: b"this is a text file, not audio " * 100, "not audio this worker can decode"),
    ],
)
def test_unusable_clips_are_refused_with_the_reason(
    settings: WorkerSettings, make: Callable[[], bytes], message: str
) -> None:
    (settings.voices_root / "bad.wav").write_bytes(make())
    with pytest.raises(InputError, match=message):
        load_reference("bad.wav", settings, 24000)


def test_a_clip_over_the_size_cap_is_refused(settings: WorkerSettings) -> None:
    (settings.voices_root / "big.wav").write_bytes(clip(5.0))
    small = settings.model_copy(update={"voice_max_bytes": 1000})
    with pytest.raises(InputError, match="over the 1,000-byte limit"):
        load_reference("big.wav", small, 24000)


@pytest.mark.parametrize("path", ["../secret.wav", "/etc/passwd", "a/../../secret.wav"])
def test_paths_cannot_escape_the_volume(settings: WorkerSettings, path: str) -> None:
    (settings.voices_root.parent / "secret.wav").write_bytes(clip(5.0))
    with pytest.raises(InputError, match="outside the voices volume"):
        load_reference(path, settings, 24000)


@pytest.mark.parametrize(
    "url", ["http://example.com/v.wav", "ftp://example.com/v.wav", "gopher://example.com/v.wav"]
)
def test_only_https_s3_and_volume_paths_are_accepted(settings: WorkerSettings, url: str) -> None:
    with pytest.raises(InputError, match="use an https URL, an s3:// URI or a path"):
        load_reference(url, settings, 24000)


def test_loopback_is_refused_unless_the_settings_allow_it(
    settings: WorkerSettings, serve: Callable[[Any], str]
) -> None:
    data = clip(4.0)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"audio/wav")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    url = f"{serve(app)}/voices/zen.wav"
    with pytest.raises(InputError, match="use an https URL"):
        load_reference(url, settings, 24000)  # plain http is refused by default
    allowed_http = settings.model_copy(update={"allow_http_voices": True})
    with pytest.raises(
        InputError, match="private, loopback, link-local or otherwise non-public address"
    ):
        load_reference(url, allowed_http, 24000)
    allowed = allowed_http.model_copy(update={"allow_private_voice_urls": True})
    assert load_reference(url, allowed, 24000).seconds == pytest.approx(4.0, abs=0.01)


def test_an_s3_clip_is_fetched(settings: WorkerSettings, s3: str) -> None:
    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="voices")
    client.put_object(Bucket="voices", Key="narrators/zen.wav", Body=clip(6.0))
    on_s3 = settings.model_copy(update={"s3_endpoint_url": s3})
    assert load_reference("s3://voices/narrators/zen.wav", on_s3, 24000).seconds == pytest.approx(
        6.0, abs=0.01
    )
    with pytest.raises(InputError, match=r"NoSuchKey|404"):
        load_reference("s3://voices/missing.wav", on_s3, 24000)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("198.18.0.1", False),  # benchmarking range
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped private
        ("2002:7f00:1::1", False),  # 6to4 wrapping 127.0.0.1
        ("2002:5db8:d822::1", True),  # 6to4 wrapping a public address
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo: client 10.0.0.1
    ],
)
def test_only_public_addresses_are_reachable(address: str, allowed: bool) -> None:
    assert reachable(ipaddress.ip_address(address)) is allowed


def test_the_fetch_connects_to_the_address_it_checked(
    settings: WorkerSettings, serve: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers the checked address once, then an internal one.
    The fetch must go to the address that was checked, never look the name up again."""
    asked: list[str] = []

    def server(name: str) -> Callable[..., Any]:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            asked.append(name)
            body = clip(4.0) if name == "checked" else b"internal secrets"
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

        return app

    checked, internal = serve(server("checked")), serve(server("internal"))
    port = int(checked.rsplit(":", 1)[1])
    internal_port = int(internal.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    answers = iter([("127.0.0.1", port)] + [("127.0.0.1", internal_port)] * 10)

    lookups: list[str] = []

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "voices.example.test":
            return real(host, *args, **kwargs)
        lookups.append(host)
        ip, answered_port = next(answers)
        return real(ip, answered_port, *args[1:], **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    allowed = settings.model_copy(
        update={"allow_http_voices": True, "allow_private_voice_urls": True}
    )
    got = load_reference(f"http://voices.example.test:{port}/zen.wav", allowed, 24000)
    assert got.seconds == pytest.approx(4.0, abs=0.01)
    assert asked == ["checked"] and lookups == ["voices.example.test"]  # looked up once


def test_a_server_that_drips_bytes_is_cut_off_at_the_deadline(
    settings: WorkerSettings, serve: Callable[[Any], str]
) -> None:
    async def drip(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(100):  # one byte every 0.3 s: no read ever times out
            await send({"type": "http.response.body", "body": b"R", "more_body": True})
            await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b""})

    url = f"{serve(drip)}/zen.wav"
    impatient = settings.model_copy(
        update={
            "allow_http_voices": True,
            "allow_private_voice_urls": True,
            "voice_fetch_seconds": 1.5,
        }
    )
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"took over 1.5 s to arrive"):
        load_reference(url, impatient, 24000)
    assert time.monotonic() - started < 4
