"""Where chapters come from and outputs go: a local folder or an S3 prefix, one interface.

    read_bytes("chapters/one.md") / read_bytes("s3://books/chapters/one.md")
    list_sources("s3://books/chapters", "*.md")
    result_storage(settings)               the chunk cache: a Path, or a saved S3Bucket block

S3 means any S3-compatible store: credentials come from boto3's usual chain (environment,
profile, instance role; never from settings), and `NARRATOR_S3_ENDPOINT_URL` points at R2
or MinIO.

A chapter's outputs are published all together by `tasks.outputs.OutputDir`.
"""

import fnmatch
import re
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gpu_worker.errors import InputError, TransientError
from gpu_worker.voices import write_atomic

CACHE_BLOCK = "narrator-chunk-cache"


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise InputError(f"{uri!r}: expected s3://BUCKET/KEY")
    return parsed.netloc, parsed.path.lstrip("/")


def output_stem(source: str) -> str:
    """The name a chapter's outputs take from its source file: its letters and digits in
    any script kept (so "Глава 1" and "Часть 1" stay apart), anything else one dash."""
    name = unicodedata.normalize("NFC", Path(source).stem)
    kept = "".join(c if _name_character(c) else " " for c in name)
    stem = re.sub(r" +", "-", kept).strip(".-")
    return stem or "chapter"


def _name_character(c: str) -> bool:
    """Letters and digits of any script, their combining marks (Devanagari's and Hebrew's
    vowel signs), and . _ -"""
    return c.isalnum() or unicodedata.category(c).startswith("M") or c in "._-"


def same_folder(a: str, b: str) -> bool:
    """Whether two output names land in one folder somewhere (case-insensitive file
    systems: macOS, Windows, many network shares)."""
    return a.casefold() == b.casefold()


def join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}" if is_s3(location) else str(Path(location) / name)


def s3_client(endpoint_url: str | None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url)


def s3_error(uri: str, error: Exception) -> Exception:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    if code in ("404", "NoSuchKey", "NoSuchBucket"):
        return InputError(f"{uri}: no such object")
    if code in ("403", "AccessDenied"):
        return InputError(f"{uri}: access denied; check the AWS credentials and bucket policy")
    return TransientError(f"{uri}: {code or type(error).__name__}: {error}")


def size(location: str, endpoint_url: str | None = None) -> int:
    if not is_s3(location):
        path = Path(location)
        if path.is_dir():
            raise InputError(f"{location}: is a directory; give the chapter's file")
        if not path.is_file():
            raise InputError(f"{location}: no such file")
        return path.stat().st_size
    bucket, key = split_s3(location)
    try:
        return int(s3_client(endpoint_url).head_object(Bucket=bucket, Key=key)["ContentLength"])
    except Exception as e:
        raise s3_error(location, e) from e


def read_bytes(location: str, endpoint_url: str | None = None) -> bytes:
    if not is_s3(location):
        size(location)
        return Path(location).read_bytes()
    bucket, key = split_s3(location)
    try:
        body = s3_client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"]
        return bytes(body.read())
    except Exception as e:
        raise s3_error(location, e) from e


def read_bytes_if_exists(location: str, endpoint_url: str | None = None) -> bytes | None:
    try:
        return read_bytes(location, endpoint_url)
    except InputError:
        return None


def read_text_if_exists(location: str, endpoint_url: str | None = None) -> str | None:
    data = read_bytes_if_exists(location, endpoint_url)
    return None if data is None else data.decode("utf-8")


def write_bytes(location: str, data: bytes, endpoint_url: str | None = None) -> None:
    """Write a whole file: locally by rename (never half-written), to S3 in one PUT."""
    if not is_s3(location):
        write_atomic(Path(location), data)
        return
    bucket, key = split_s3(location)
    try:
        s3_client(endpoint_url).put_object(Bucket=bucket, Key=key, Body=data)
    except Exception as e:
        raise s3_error(location, e) from e


def delete(location: str, endpoint_url: str | None = None) -> None:
    if not is_s3(location):
        Path(location).unlink(missing_ok=True)
        return
    bucket, key = split_s3(location)
    try:
        s3_client(endpoint_url).delete_object(Bucket=bucket, Key=key)
    except Exception as e:
        raise s3_error(location, e) from e


def list_sources(location: str, pattern: str, endpoint_url: str | None = None) -> list[str]:
    """The files directly in `location` (a folder or an S3 prefix) matching `pattern`."""
    if not is_s3(location):
        folder = Path(location)
        if not folder.is_dir():
            raise InputError(f"{location}: no such folder")
        return sorted(str(p) for p in folder.glob(pattern) if p.is_file())
    bucket, prefix = split_s3(location)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found = []
    try:
        pages = (
            s3_client(endpoint_url)
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if fnmatch.fnmatch(name, pattern):
                    found.append(f"s3://{bucket}/{item['Key']}")
    except Exception as e:
        raise s3_error(location, e) from e
    return sorted(found)


def result_storage(cache: str, endpoint_url: str | None) -> Path | str:
    """The chunk cache as Prefect result storage: a folder, or for an s3:// location a saved
    S3Bucket block (Prefect needs a saved block, not an instance) named CACHE_BLOCK."""
    if not is_s3(cache):
        return Path(cache).expanduser()
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    bucket, prefix = split_s3(cache)
    credentials = AwsCredentials(
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint_url)
    )  # keys stay in the environment, never in the block
    S3Bucket(bucket_name=bucket, bucket_folder=prefix, credentials=credentials).save(
        CACHE_BLOCK, overwrite=True
    )
    return f"s3-bucket/{CACHE_BLOCK}"
