"""A folder on a local or network filesystem as a :class:`~imnet_data.stores.base.WritableStore` (what a path
without a URL scheme opens)."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from imnet_data.stores.base import Stat, capped_read, file_sha256
from imnet_data.stores.errors import StoreError
from imnet_data.tario import atomic_file


class FolderStore:
    """A folder; names are relative paths in it."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def child(self, name: str) -> FolderStore:
        """The store of a sub-folder."""
        return FolderStore(self.root / name)

    def url(self, name: str) -> str:
        """The file's path."""
        return str(self.root / name)

    def local_folder(self) -> Path:
        """The folder itself: its files can be linked, shards written in place."""
        return self.root

    def read(self, name: str) -> bytes | None:
        """A metadata file's bytes (None when absent; StoreError past the metadata cap)."""
        try:
            with open(self.root / name, "rb") as f:
                return capped_read(f.read, self.url(name))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"{self.url(name)}: {e.strerror}") from e

    @contextlib.contextmanager
    def open(self, name: str, start: int) -> Iterator[tuple[int, Callable[[memoryview], int]]]:
        """``(offset, readinto)``: file ``name`` from byte ``start``."""
        try:
            f = open(self.root / name, "rb")
        except (FileNotFoundError, PermissionError) as e:
            raise StoreError(f"{self.root / name}: {e.strerror}") from e
        with f:
            f.seek(start)
            yield start, f.readinto

    def stat(self, name: str) -> Stat | None:
        """The file's size; None when absent."""
        try:
            return Stat((self.root / name).stat().st_size)
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        """``name`` holding ``data``, under its final name only once complete."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as f:
            f.write(data)

    def sha256(self, name: str) -> str:
        """The sha256 of the file's bytes."""
        return file_sha256(self.root / name)

    def names(self) -> list[str]:
        """Every file under the folder, relative to it, sorted."""
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def delete(self, name: str) -> None:
        """Remove the file (nothing when absent)."""
        (self.root / name).unlink(missing_ok=True)
