"""WAV bytes <-> float32 samples, and resampling. The only audio codec code in the project."""

import io

import numpy as np
import soundfile as sf
import soxr

from gpu_worker.errors import PermanentError


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """float32 mono in [-1, 1] -> 16-bit PCM WAV bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def decode_wav(data: bytes, what: str = "audio") -> tuple[np.ndarray, int]:
    """Audio bytes -> (float32 mono samples, rate). Undecodable bytes are permanent errors."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise PermanentError(f"{what} is not decodable audio ({len(data)} bytes): {e}") from e
    return samples.mean(axis=1).astype(np.float32), int(rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """High-quality sample-rate conversion (libsoxr)."""
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target).astype(np.float32)
