"""Where outputs are written, so that a failure never leaves a half-written final file.

An `OutputDir` stages every file of a run in a hidden folder beside the final ones. Only
after all of them are written and verified does `publish()` move them into place, one
atomic rename each, with metadata.json last; a run that fails calls `discard()` and the
previous run's outputs stay exactly as they were.
"""

import os
import shutil
import tempfile
from pathlib import Path

from gpu_worker.errors import InputError


class OutputDir:
    def __init__(self, final: Path) -> None:
        self.final = final
        try:
            final.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as e:
            raise InputError(f"{final}: exists and is not a directory; choose another --out") from e
        self.staging = Path(tempfile.mkdtemp(prefix=".narrator-staging-", dir=final))
        self._staged: list[str] = []

    def path(self, name: str) -> Path:
        """Where to write `name` before it is published."""
        if Path(name).name != name or name.startswith("."):
            raise InputError(f"output name {name!r} must be a plain file name")
        if name not in self._staged:
            self._staged.append(name)
        return self.staging / name

    def write_text(self, name: str, text: str) -> Path:
        path = self.path(name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return path

    def publish(self, last: str | None = None) -> list[Path]:
        """Move every staged file into the final folder (`last` goes last)."""
        order = [n for n in self._staged if n != last] + ([last] if last in self._staged else [])
        published = []
        for name in order:
            target = self.final / name
            os.replace(self.staging / name, target)
            published.append(target)
        shutil.rmtree(self.staging, ignore_errors=True)
        return published

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
