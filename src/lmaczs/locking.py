"""Lock files that keep two jobs from writing into one output folder (``fcntl.flock``, released on exit).

    with DirLock(run_dir, owner="lmac-zs train"):   # a second job on run_dir gets a one-line OutputError
        ...

The lock lives in a hidden file of the folder (``.lock`` by default). The kernel drops it when the process
ends, however it ends, so a killed job never leaves a stale lock; the file itself is removed on release, and
so is the folder when the lock created it and nothing else was written there. A
shared lock (``shared=True``) admits other shared holders and excludes exclusive ones (sharded corpus jobs
share a folder; an unsharded job needs it alone).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from .errors import OutputError, first_line

LOCK_NAME = ".lock"


class DirLock:
    """An advisory lock on a folder (created if missing), held from ``acquire()``/``__enter__`` to release.

    Args:
        folder: the output folder.
        name: the lock file's name inside it.
        shared: take a shared instead of an exclusive lock.
        owner: what holds the lock, for the refusal message (e.g. ``"lmac-zs train"``).
    """

    def __init__(self, folder: str | os.PathLike, name: str = LOCK_NAME, shared: bool = False,
                 owner: str = "another lmac-zs job"):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.shared = shared
        self.owner = owner
        self._fd: int | None = None
        self._created = False  # the folder was made for the lock: removed again if it is left empty

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "DirLock":
        """Take the lock without waiting; :class:`OutputError` if another process holds it."""
        if self._fd is not None:
            return self
        try:
            self._created = not self.folder.is_dir()
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.folder}: {exc.strerror or first_line(exc)}") from None
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot write {self.path}: {exc.strerror or first_line(exc)}") from None
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise OutputError(f"{self.folder} is in use by {self.owner}{f' (pid {holder})' if holder else ''}: "
                                  f"wait for it to finish or choose another --out (lock file {self.path})") from None
            except OSError as exc:  # a file system without flock support
                os.close(fd)
                raise OutputError(f"cannot lock {self.path}: {exc.strerror or first_line(exc)}") from None
            if _same_file(fd, self.path):  # not a file that a releasing holder unlinked meanwhile
                break
            os.close(fd)
        if not self.shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock; the last holder removes the lock file."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self.shared:
                try:  # sole holder if an exclusive lock can be had at once
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return
                if not _same_file(fd, self.path):
                    return
            os.unlink(self.path)
            if self._created:
                os.rmdir(self.folder)  # fails (and stays) unless empty
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


__all__ = ["DirLock", "LOCK_NAME"]
