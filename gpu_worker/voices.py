"""Reference audio for voice cloning: fetched, checked, resampled, cached by content hash.

    load_reference("https://cdn.example.com/voices/zen.wav", settings, 24000)
    load_reference("s3://bucket/voices/zen.wav", settings, 24000)
    load_reference("voices/zen.wav", settings, 24000)      # under settings.voices_root

Only https is fetched, only from public addresses (resolved once, and connected to as
checked), within a deadline, unless the settings allow otherwise (a worker must not be a
way into the network it runs in). Paths must stay
under the volume root (or a local voice library). A clip must decode, last 3-60 s, and be
neither silent nor clipped. The checked clip is cached as a mono WAV at the engine's rate
under its sha256, so a voice is fetched and checked once per worker, and the same bytes
under another URL are the same voice.
"""

import hashlib
import ipaddress
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from gpu_worker.errors import InputError, TransientError
from gpu_worker.qc import CLIP_LEVEL, MAX_CLIPPED_FRACTION, SILENCE_DBFS, rms_dbfs
from gpu_worker.redaction import redact
from gpu_worker.settings import WorkerSettings
from gpu_worker.wav import decode_wav, encode_wav, resample

MIN_SECONDS = 3.0
MAX_SECONDS = 60.0


@dataclass(frozen=True)
class ReferenceAudio:
    sha256: str  # of the bytes as fetched: the voice's fingerprint
    path: Path  # the checked clip: mono 16-bit WAV at `rate`
    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate


def load_reference(uri: str, settings: WorkerSettings, rate: int) -> ReferenceAudio:
    """Fetch (or find in the cache), check and resample the reference clip at `uri`."""
    data = fetch(uri, settings)
    digest = hashlib.sha256(data).hexdigest()
    cached = settings.voice_cache_dir / f"{digest}-{rate}.wav"
    if cached.is_file():
        samples, _ = decode_wav(cached.read_bytes())
        return ReferenceAudio(digest, cached, samples, rate)
    samples = check_clip(data, uri, rate)
    write_atomic(cached, encode_wav(samples, rate))
    return ReferenceAudio(digest, cached, samples, rate)


def fingerprint(uri: str, settings: WorkerSettings) -> str:
    """sha256 of the reference audio's bytes: what the cache key uses, not the URL."""
    return hashlib.sha256(fetch(uri, settings)).hexdigest()


def check_clip(data: bytes, uri: str, rate: int) -> np.ndarray:
    """The clip as float32 mono at `rate`, or an InputError saying what is wrong with it."""
    try:
        samples, source_rate = decode_wav(data, f"reference audio {redact(uri)}")
    except Exception as e:
        raise InputError(
            f"reference audio {redact(uri)} is not audio this worker can decode (WAV, FLAC or OGG)"
        ) from e
    seconds = samples.size / source_rate
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise InputError(
            f"reference audio {redact(uri)} lasts {seconds:.1f} s; a voice clip must last "
            f"{MIN_SECONDS:.0f}-{MAX_SECONDS:.0f} s (10-20 s works best)"
        )
    if rms_dbfs(samples) < SILENCE_DBFS:
        raise InputError(f"reference audio {redact(uri)} is silent")
    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL))
    if clipped > MAX_CLIPPED_FRACTION:
        raise InputError(
            f"reference audio {redact(uri)} is clipped ({100 * clipped:.1f} % of its samples "
            "at full scale); record it again with less gain"
        )
    return resample(samples, source_rate, rate)


def fetch(uri: str, settings: WorkerSettings) -> bytes:
    scheme = urlparse(uri).scheme.lower()
    if scheme == "https" or (scheme == "http" and settings.allow_http_voices):
        return _fetch_url(uri, settings)
    if scheme == "s3":
        return _fetch_s3(uri, settings)
    if scheme in ("", "file"):
        return _read_volume(uri.removeprefix("file://"), settings)
    raise InputError(
        f"audio_prompt_url {redact(uri)!r}: use an https URL, an s3:// URI or a path "
        f"under the voices volume ({settings.voices_root}); {scheme}:// is refused"
    )


def reachable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a worker may fetch from `ip`: a globally routable address (`is_global`:
    no private, loopback, link-local, carrier-grade NAT or reserved range), and for an IPv6
    address that wraps an IPv4 one (mapped, 6to4, Teredo) the wrapped address too."""
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        wrapped = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        return all(reachable(inner) for inner in wrapped if inner is not None)
    return True


def _resolve(host: str, port: int, settings: WorkerSettings) -> str:
    """The one address the fetch will connect to, resolved once and checked: connecting
    to it (not to whatever a second lookup answers) closes the DNS-rebinding window."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise InputError(f"audio_prompt_url host {host!r} does not resolve") from e
    addresses = [ipaddress.ip_address(str(a[4][0]).split("%")[0]) for a in answers]
    if not settings.allow_private_voice_urls:
        for ip in addresses:
            if not reachable(ip):
                raise InputError(
                    f"audio_prompt_url host {host!r} is a private, loopback, link-local or "
                    f"otherwise non-public address ({ip}); refused"
                )
    return str(addresses[0])


def _fetch_url(url: str, settings: WorkerSettings) -> bytes:
    parsed = httpx.URL(url)
    host = parsed.host
    if not host:
        raise InputError(f"audio_prompt_url {redact(url)!r} has no host")
    address = _resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80), settings)
    pinned = parsed.copy_with(host=address)
    # the host name still names the server: in the Host header and in TLS (SNI and the
    # certificate check), while the connection goes to the address that was checked
    headers = {"host": parsed.netloc.decode("ascii").rsplit("@", 1)[-1]}
    limit, deadline = settings.voice_max_bytes, time.monotonic() + settings.voice_fetch_seconds
    try:
        # No redirects: a redirect could point at an address the check above refuses.
        with (
            httpx.Client(timeout=httpx.Timeout(10.0), follow_redirects=False) as client,
            client.stream(
                "GET", pinned, headers=headers, extensions={"sni_hostname": host}
            ) as response,
        ):
            code = response.status_code
            if code >= 500 or code == 429:
                raise TransientError(f"reference audio {redact(url)}: HTTP {code}")
            if code != 200:
                raise InputError(f"reference audio {redact(url)}: HTTP {code}")
            data = bytearray()
            for block in response.iter_bytes():
                data += block
                if len(data) > limit:
                    raise InputError(
                        f"reference audio {redact(url)} is over the {limit:,}-byte limit"
                    )
                if time.monotonic() > deadline:  # a server that drips bytes
                    raise TransientError(
                        f"reference audio {redact(url)} took over "
                        f"{settings.voice_fetch_seconds:g} s to arrive"
                    )
            return bytes(data)
    except httpx.TransportError as e:
        raise TransientError(
            f"reference audio {redact(url)}: {type(e).__name__}: {redact(str(e))}"
        ) from None


def _fetch_s3(uri: str, settings: WorkerSettings) -> bytes:
    import boto3
    import botocore.exceptions

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise InputError(f"audio_prompt_url {redact(uri)!r}: expected s3://BUCKET/KEY")
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > settings.voice_max_bytes:
            raise InputError(
                f"reference audio {redact(uri)} is over the {settings.voice_max_bytes:,}-byte limit"
            )
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except botocore.exceptions.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "403", "AccessDenied"):
            raise InputError(f"reference audio {redact(uri)}: {code}") from e
        raise TransientError(f"reference audio {redact(uri)}: {code or e}") from e


def _read_volume(relative: str, settings: WorkerSettings) -> bytes:
    """A relative path is read under the voices volume; an absolute one must be inside the
    volume or a local voice library."""
    root = settings.voices_root.resolve()
    path = (root / relative).resolve()
    roots = [root]
    if settings.library_root is not None:
        roots.append(settings.library_root.expanduser().resolve())
    if not any(path.is_relative_to(r) for r in roots):
        raise InputError(f"audio_prompt_url {relative!r} is outside the voices volume {root}")
    if not path.is_file():
        hint = ""  # "voices/zen.wav" for "zen.wav": the folder named twice
        first, _, rest = relative.partition("/")
        if rest and first == root.name and (root / rest).is_file():
            hint = f" (paths are relative to that folder: use {rest!r})"
        raise InputError(f"reference audio {relative!r}: no such file under {root}{hint}")
    if path.stat().st_size > settings.voice_max_bytes:
        raise InputError(
            f"reference audio {relative!r} is over the {settings.voice_max_bytes:,}-byte limit"
        )
    return path.read_bytes()


def write_atomic(path: Path, data: bytes) -> None:
    """Write a whole file by rename: a reader sees the old file or the new, never half (its
    data is on disk before the rename, so a power cut cannot leave an empty file either)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
