"""A chapter's outputs: locked while a run writes them, published all together, and checked
by a manifest.

    output = OutputDir("out/one")          # or "s3://books/audio/one"; takes the chapter's lock
    wav = output.path("one.wav")           # files are written to a local staging folder
    output.publish(last="metadata.json")   # all moved into place, then manifest.json
    output.discard()                       # a failed run: the previous outputs stay as they were
    published_problem("out/one")           # None when the folder holds one whole published set

**Lock.** One run writes a chapter's folder at a time: `.narrator.lock` in it is held from
the moment the OutputDir is made (before any chunk is generated, so a refused run costs
nothing) until publish or discard. Locally it is an flock, which the kernel releases when the
process dies. On S3 it is an object created only if absent (If-None-Match), holding its
owner and an expiry (`output_lock_seconds`); a later run takes it over once it has expired,
or at once when its owner was a process on the same host that is gone.

**Publish.** Nothing is visible until every file is written. Then a journal
(`.narrator-publishing.json`, every file with its size and sha256) is written, the previous
manifest.json removed, each file moved into place (a rename; on S3 a server-side copy from a
staging prefix the files were uploaded to first), metadata.json last, the new manifest.json
written, and the journal deleted. A publish cut short (a killed process, the network gone) is
finished by the next run that opens the folder, from the journal; until then the folder has
no manifest.json, which is how a reader knows not to trust it.
"""

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from gpu_worker.errors import InputError, StorageFull, storage_full
from gpu_worker.voices import write_atomic
from tasks.storage import is_s3, join, s3_client, s3_error, split_s3

MANIFEST = "manifest.json"
JOURNAL = ".narrator-publishing.json"
LOCK = ".narrator.lock"
REMOTE_STAGING = ".narrator-staging-"
DEFAULT_LOCK_SECONDS = 6 * 3600.0
FULL_BELOW_BYTES = 1 << 20  # a disk with less free is full for a chapter's files

_HOST = socket.gethostname()
log = logging.getLogger("narrator.outputs")


class OutputDir:
    """Where one run's outputs are staged, and published to `final` (a folder or an s3://
    prefix) all at once."""

    def __init__(
        self,
        final: str,
        endpoint_url: str | None = None,
        lock_seconds: float = DEFAULT_LOCK_SECONDS,
    ) -> None:
        # Local folders are kept absolute: runs from the UI happen in a worker's directory.
        self.final = final if is_s3(final) else str(Path(final).absolute())
        self.endpoint_url = endpoint_url
        self._client: Any = s3_client(endpoint_url) if is_s3(final) else None
        if self._client is None:
            folder = Path(self.final)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as e:
                raise InputError(
                    f"{final}: exists and is not a directory; choose another --out"
                ) from e
            self._lock: _Lock = _FileLock(folder / LOCK, final)
            stage_in, prefix = folder, ".narrator-staging-"
        else:
            self._lock = _S3Lock(self._client, join(final, LOCK), lock_seconds)
            stage_in, prefix = Path(tempfile.gettempdir()), "narrator-staging-"
        try:  # the lock is held from here: released if the folder cannot be opened
            self._finish_interrupted_publish()
            self.staging = _stage(stage_in, prefix)
        except BaseException:
            self._lock.release()
            raise
        self._staged: list[str] = []
        self._journaled = False
        self._uploaded: list[str] = []  # S3: this run's files in a staging prefix

    def path(self, name: str) -> Path:
        """Where to write `name` before it is published."""
        if Path(name).name != name or name.startswith(".") or name == MANIFEST:
            raise InputError(f"output name {name!r} must be a plain file name")
        if name not in self._staged:
            self._staged.append(name)
        return self.staging / name

    def write_text(self, name: str, text: str) -> Path:
        path = self.path(name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def publish(self, last: str | None = None) -> list[str]:
        """Move every staged file into place (`last` goes last), then the manifest; returns
        their locations, the manifest's last. Releases the lock."""
        order = [n for n in self._staged if n != last] + ([last] if last in self._staged else [])
        files = {name: _describe(self.staging / name) for name in order}
        if self._client is None:
            journal = {"staging": str(self.staging), "order": order, "files": files}
        else:
            prefix = join(self.final, f"{REMOTE_STAGING}{uuid.uuid4().hex[:12]}")
            for name in order:  # the slow part: cut short here, the old set is untouched
                self._uploaded.append(join(prefix, name))
                self._upload(self.staging / name, join(prefix, name))
            journal = {"staging": prefix, "order": order, "files": files}
        self._write(JOURNAL, json.dumps(journal).encode())
        self._journaled = True
        published = self._move_into_place(journal)
        shutil.rmtree(self.staging, ignore_errors=True)
        self._lock.release()
        return published

    def discard(self) -> None:
        """Forget this run's files; the folder keeps what it had. A publish already under
        way (its journal written) is left for the next run to finish."""
        if self._journaled and self._client is None:
            self._lock.release()  # its files are the journal's: the next run moves them
            return
        shutil.rmtree(self.staging, ignore_errors=True)
        if not self._journaled:
            for uri in self._uploaded:
                with contextlib.suppress(Exception):  # else swept by the next run
                    self._delete_uri(uri)
        self._lock.release()

    def read_published(self, name: str) -> bytes | None:
        """A file of the set published here before this run (None: there is none)."""
        return self._read(name)

    def full_disk(self, error: BaseException) -> StorageFull | None:
        """`error` as "disk full at <folder>" when this run's files found no room: an OSError
        saying so, or any failure (an encoder's, libsndfile's) while the staging folder's
        disk is full. Asked before `discard`, which frees that room."""
        where = self.final if self._client is None else str(self.staging.parent)
        full = storage_full(error, where)
        crowded = self.staging.exists() and shutil.disk_usage(self.staging).free < FULL_BELOW_BYTES
        if full is None and crowded:
            full = storage_full(OSError(errno.ENOSPC, "no space"), where)
        return full

    def _move_into_place(self, journal: dict[str, Any]) -> list[str]:
        """Steps after the journal, the same for a publish and for finishing one: the old
        manifest removed, every file moved, the new manifest, the journal deleted."""
        self._delete(MANIFEST)
        staging: str = journal["staging"]
        published = []
        for name in journal["order"]:
            target = join(self.final, name)
            if self._client is None:
                source = Path(staging) / name
                if source.exists():
                    os.replace(source, target)
                elif _describe(Path(target)) != journal["files"][name]:
                    raise InputError(
                        f"{self.final}: an interrupted publish cannot be finished ({name} is "
                        f"gone from its staging folder); delete {join(self.final, JOURNAL)} "
                        "and rerun the chapter"
                    )
            else:
                self._copy(join(staging, name), target)
            published.append(target)
        manifest = {
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": journal["files"],
        }
        self._write(MANIFEST, json.dumps(manifest, indent=2).encode())
        published.append(join(self.final, MANIFEST))
        self._delete(JOURNAL)
        if self._client is None:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            for name in journal["order"]:
                self._delete_uri(join(staging, name))
        return published

    def _finish_interrupted_publish(self) -> None:
        """Under the lock: a journal left by a publish cut short is carried through."""
        raw = self._read(JOURNAL)
        if raw is None:
            self._sweep_remote_staging()
            return
        try:
            journal = json.loads(raw)
            journal["staging"], journal["order"], journal["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(
                f"{join(self.final, JOURNAL)}: not a publish journal; delete it and rerun"
            ) from e
        self._move_into_place(journal)
        self._sweep_remote_staging()

    def _sweep_remote_staging(self) -> None:
        """S3: files a run uploaded and never published (killed while uploading). Under the
        lock no other run is uploading, and a journal's staging prefix is gone once it is
        carried through."""
        if self._client is None:
            return
        bucket, key = split_s3(join(self.final, REMOTE_STAGING))
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=key
            )
            for page in pages:
                for item in page.get("Contents", []):
                    self._client.delete_object(Bucket=bucket, Key=item["Key"])
        except Exception as e:
            raise s3_error(self.final, e) from e

    # storage operations, local or S3
    def _read(self, name: str) -> bytes | None:
        return read_if_exists(join(self.final, name), self._client)

    def _write(self, name: str, data: bytes) -> None:
        target = join(self.final, name)
        if self._client is None:
            write_atomic(Path(target), data)
            return
        bucket, key = split_s3(target)
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as e:
            raise s3_error(target, e) from e

    def _delete(self, name: str) -> None:
        self._delete_uri(join(self.final, name))

    def _delete_uri(self, uri: str) -> None:
        if self._client is None:
            Path(uri).unlink(missing_ok=True)
            return
        bucket, key = split_s3(uri)
        try:
            self._client.delete_object(Bucket=bucket, Key=key)
        except Exception as e:
            raise s3_error(uri, e) from e

    def _upload(self, path: Path, uri: str) -> None:
        bucket, key = split_s3(uri)
        try:
            self._client.upload_file(str(path), bucket, key)
        except Exception as e:
            raise s3_error(uri, e) from e

    def _copy(self, source: str, target: str) -> None:
        bucket, key = split_s3(target)
        from_bucket, from_key = split_s3(source)
        try:
            self._client.copy({"Bucket": from_bucket, "Key": from_key}, bucket, key)
        except Exception as e:
            raise s3_error(target, e) from e


def published_problem(final: str, endpoint_url: str | None = None) -> str | None:
    """What is wrong with the outputs in `final` as one published set (its manifest missing,
    a publish left unfinished, a file missing or not the size the manifest says), or None
    when they are whole. Sizes are compared, not hashes: cheap enough for a nightly batch to
    ask of every chapter."""
    client = s3_client(endpoint_url) if is_s3(final) else None
    if read_if_exists(join(final, JOURNAL), client) is not None:
        return "a publish was cut short (the next run of this chapter finishes it)"
    raw = read_if_exists(join(final, MANIFEST), client)
    if raw is None:
        return f"no {MANIFEST}: not a published set"
    try:
        files: dict[str, dict[str, Any]] = json.loads(raw)["files"]
        sizes = {name: int(entry["bytes"]) for name, entry in files.items()}
    except (ValueError, KeyError, TypeError):
        return f"{MANIFEST} is not a manifest"
    for name, expected in sizes.items():
        found = _size(join(final, name), client)
        if found != expected:
            what = "missing" if found is None else f"{found} bytes, not {expected}"
            return f"{name} is {what}"
    return None


def read_if_exists(location: str, client: Any) -> bytes | None:
    if client is None:
        try:
            return Path(location).read_bytes()
        except FileNotFoundError:
            return None
    bucket, key = split_s3(location)
    try:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as e:
        if _code(e) in ("404", "NoSuchKey"):
            return None
        raise s3_error(location, e) from e


def _size(location: str, client: Any) -> int | None:
    if client is None:
        path = Path(location)
        return path.stat().st_size if path.is_file() else None
    bucket, key = split_s3(location)
    try:
        return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except Exception as e:
        if _code(e) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise s3_error(location, e) from e


def _describe(path: Path) -> dict[str, Any] | None:
    """A file's size and sha256, flushed to disk first (a publish never points at data that
    a power cut could still lose); None when there is no file."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        os.fsync(f.fileno())
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


class _Lock:
    def release(self) -> None: ...


def _owner() -> dict[str, Any]:
    return {
        "host": _HOST,
        "pid": os.getpid(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _busy(final: str, owner: dict[str, Any], where: str) -> InputError:
    return InputError(
        f"{final}: another run is writing this chapter (process {owner.get('pid', '?')} on "
        f"{owner.get('host', '?')}, since {owner.get('since', '?')}); wait for it to finish "
        f"or choose another --out{where}"
    )


class _FileLock(_Lock):
    """An flock on a file in the chapter's folder, with its owner written in it."""

    def __init__(self, path: Path, final: str) -> None:
        import fcntl

        self._file: BinaryIO | None = open(path, "a+b")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            owner = _parse(self._file.read())
            self._file.close()
            self._file = None
            raise _busy(final, owner, "") from None
        self._file.truncate(0)
        self._file.write(json.dumps(_owner()).encode())
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the only descriptor releases the flock
            self._file = None


class _S3Lock(_Lock):
    """An object created only if absent; taken over once expired or its owner is gone."""

    def __init__(self, client: Any, uri: str, lease_seconds: float) -> None:
        self._client = client
        self._uri = uri
        self._bucket, self._key = split_s3(uri)
        self._id = uuid.uuid4().hex
        mine = {**_owner(), "expires": time.time() + lease_seconds, "id": self._id}
        body = json.dumps(mine).encode()
        self._etag: str | None = None
        for _ in range(3):
            try:
                answer = client.put_object(
                    Bucket=self._bucket, Key=self._key, Body=body, IfNoneMatch="*"
                )
                self._etag = answer["ETag"]
                return
            except Exception as e:
                if _code(e) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise s3_error(uri, e) from e
            try:
                held = client.get_object(Bucket=self._bucket, Key=self._key)
            except Exception as e:
                if _code(e) in ("404", "NoSuchKey"):
                    continue  # released meanwhile: try again
                raise s3_error(uri, e) from e
            owner = _parse(held["Body"].read())
            if not _stale(owner):
                raise _busy(
                    uri.rsplit("/", 1)[0],
                    owner,
                    f" (a run that is gone holds it until {_until(owner)}: "
                    f"delete {uri} to free it now)",
                )
            try:  # take it over, unless another run took it first
                answer = client.put_object(
                    Bucket=self._bucket, Key=self._key, Body=body, IfMatch=held["ETag"]
                )
                self._etag = answer["ETag"]
                return
            except Exception as e:
                if _code(e) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise s3_error(uri, e) from e
        raise InputError(f"{uri}: could not take the chapter's lock; try again")

    def release(self) -> None:
        if self._etag is None:
            return
        etag, self._etag = self._etag, None
        # only the lock this run holds: after its expiry another run may hold it
        try:
            self._client.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=etag)
            return
        except Exception as e:
            if _code(e) in ("PreconditionFailed", "404", "NoSuchKey"):
                return  # taken over after its expiry, or gone: not ours to delete
            refused = e
        try:  # a store without conditional deletes: delete it if it is still this run's
            held = _parse(
                self._client.get_object(Bucket=self._bucket, Key=self._key)["Body"].read()
            )
            if held.get("id") == self._id:
                self._client.delete_object(Bucket=self._bucket, Key=self._key)
        except Exception as e:
            log.warning(
                "could not release the lock %s (%s, then %s); it expires by itself",
                self._uri,
                type(refused).__name__,
                type(e).__name__,
            )


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        owner = json.loads(raw)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _stale(owner: dict[str, Any]) -> bool:
    expires = owner.get("expires")
    if not isinstance(expires, int | float) or time.time() > expires:
        return True
    pid = owner.get("pid")
    return owner.get("host") == _HOST and isinstance(pid, int) and not _alive(pid)


def _until(owner: dict[str, Any]) -> str:
    return datetime.fromtimestamp(float(owner.get("expires", 0)), UTC).isoformat(timespec="seconds")


def _stage(folder: Path, prefix: str) -> Path:
    """A new staging folder in `folder`, named after this host and process. Staging folders
    there of processes that are gone (a run killed before it could discard its own) are
    removed first."""
    owner = re.compile(re.escape(f"{prefix}{_HOST}-") + r"(\d+)-")
    for stale in folder.glob(f"{prefix}*"):
        m = owner.match(stale.name)
        if m and stale.is_dir() and not _alive(int(m[1])):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{_HOST}-{os.getpid()}-", dir=folder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
