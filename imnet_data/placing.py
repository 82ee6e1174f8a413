"""Where ``organize`` puts a unit's files, and how each is written: the class folders made and checked inside DEST,
a new class folder filled under a staging name and renamed once (:class:`Folders`), any other file written under
a temp name and renamed (:func:`write_file`), the split folders marked to spread their class folders over the
disk (:func:`spread_subfolders`). Output paths come only from a validated WNID and a plain base name
(:func:`base_name`); nothing follows a link planted in DEST."""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import struct

from imnet_data.sources import Sample, Unit
from imnet_data.sources.base import WNID, check_wnid
from imnet_data.sources.safety import UnsafeArchiveError

TMP_SUFFIX = ".partial"
LONG = struct.Struct("l")
FS_IOC_GETFLAGS = (2 << 30) | (LONG.size << 16) | (ord("f") << 8) | 1     # Linux's _IOR('f', 1, long)
FS_IOC_SETFLAGS = (1 << 30) | (LONG.size << 16) | (ord("f") << 8) | 2     # _IOW('f', 2, long)
FS_TOPDIR_FL = 0x00020000                                                # chattr +T


class Folders:
    """Where one unit's files go. The unit's own class folder, when it does not exist yet, is a staging folder
    beside the unit's marker, renamed into place by :meth:`finish` once every file is in it (so each file is
    written once under its own name: no temp name, no rename per file); any other folder is made (and checked
    inside DEST) on its first file, and each file in it is written under a temp name and renamed."""

    def __init__(self, dest: str, unit: Unit, marker: str) -> None:
        self.dest, self.unit, self.marker = dest, unit, marker
        final = os.path.join(dest, unit.split, unit.name)
        self.stages = bool(WNID.match(unit.name)) and not os.path.lexists(final)
        self.paths: dict[str, str] = {}
        self.staging: str | None = None
        self.origin = ""

    def write(self, sample: Sample, name: str, data: bytes) -> None:
        """Write ``data`` as ``name`` in the folder of ``sample``'s split and class."""
        wnid = sample.wnid or ""
        if wnid not in self.paths:
            self.paths[wnid] = self.open(sample.split, wnid, sample.origin)
        path = os.path.join(self.paths[wnid], name)
        if self.paths[wnid] == self.staging:
            write_new(path, data)
        else:
            write_file(path, data)

    def open(self, split: str, wnid: str, origin: str) -> str:
        """The folder a first file of ``split``/``wnid`` goes to: the staging folder (made) for the unit's own
        class, else the class folder (made)."""
        if not (self.stages and (split, wnid) == (self.unit.split, self.unit.name)):
            return class_folder(self.dest, split, wnid or None, origin)
        os.makedirs(os.path.dirname(self.marker), exist_ok=True)
        folder = f"{self.marker[:-len('.json')]}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}"
        os.mkdir(folder)
        self.staging, self.origin = check_inside(self.dest, folder, origin), origin
        return folder

    def finish(self) -> None:
        """Rename the staging folder (if any) to its class folder; where that appeared meanwhile (another run of
        the unit, or another unit of the class), move the files in one by one instead, each replacing its own."""
        if self.staging is None:
            return
        final = os.path.join(class_folder(self.dest, self.unit.split, None, self.origin), self.unit.name)
        try:
            os.rename(self.staging, final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise
            final = class_folder(self.dest, self.unit.split, self.unit.name, self.origin)
            for entry in os.scandir(self.staging):
                os.replace(entry.path, os.path.join(final, entry.name))
            os.rmdir(self.staging)
        self.staging = None

    def abort(self) -> None:
        """Remove the staging folder of a unit that failed (its files never reach the class folder)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def spread_subfolders(folder: str) -> bool:
    """Make ``folder`` and mark it, where the filesystem takes the hint (ext4's ``chattr +T``, the Orlov
    allocator's "top of unrelated directories"), so each class folder made in it goes to one of the block groups
    with the fewest folders rather than beside it. Whether the mark is set; anywhere else a no-op.

    Why: without the mark all class folders, and so all their files, go to the block groups beside the split
    folder, which after ``rm -rf`` of an earlier output are the ones just freed; on ext4 without a journal each new
    file then walks past every inode of its group freed in the last 60-360 s (``find_inode_bit``), so a re-run
    right after a delete was 2-4x slower than a fresh one (``tools/bench_recent_delete.py``). Spread over the disk,
    few of them land there: organize at the full count right after a delete, 117 s -> 63 s (docs/walkthrough.md)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:      # a link or a file planted there: left to the checks of the writes
        return False
    try:
        flags = LONG.unpack(fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(LONG.size)))[0]
        if not flags & FS_TOPDIR_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, LONG.pack(flags | FS_TOPDIR_FL))
        return True
    except OSError:    # no such flags here (tmpfs, NFS, macOS: ENOTTY, EOPNOTSUPP, EINVAL) or not ours (EPERM)
        return False
    finally:
        os.close(fd)


def base_name(name: str, origin: str) -> str:
    """``name`` if it is a plain file name (no folders, not hidden, not too long), else UnsafeArchiveError."""
    if (not name or "/" in name or "\\" in name or "\x00" in name or name.startswith(".")
            or len(name.encode("utf-8", "surrogateescape")) > 240):
        raise UnsafeArchiveError(f"{origin}: file name {name!r} is not a plain base name; refused")
    return name


def class_folder(dest: str, split: str, wnid: str | None, origin: str) -> str:
    """``DEST/<split>/<wnid>`` (``DEST/<split>`` without a class), created, after checking the WNID and that the
    folder resolves inside DEST."""
    folder = os.path.join(dest, split, *([check_wnid(wnid, origin)] if wnid else []))
    os.makedirs(folder, exist_ok=True)
    return check_inside(dest, folder, origin)


def check_inside(dest: str, folder: str, origin: str) -> str:
    """``folder`` if it resolves inside ``dest``, else UnsafeArchiveError (a link planted in DEST)."""
    if not os.path.realpath(folder).startswith(os.path.realpath(dest) + os.sep):
        raise UnsafeArchiveError(f"{origin}: output folder {folder} resolves outside {dest}; refused")
    return folder


def write_new(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (never following a link) with bare ``open``/``write``/``close`` calls: a Python
    file object adds an fstat, an ioctl and an lseek per file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``.<name>.partial`` beside ``path`` (never following a link), then rename it over."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}{TMP_SUFFIX}")
    try:
        write_new(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
