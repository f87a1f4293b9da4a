"""File operations that a ``kill -9`` at any moment leaves whole: a file is either whole under its
old name or whole under its new one, never half-written under a final name, never lost.

- A copy is written to a hidden temporary name beside its destination (``temp_path``), fsynced,
  checked against the source's sha256 and only then renamed into place; the folder is fsynced so
  that the new name survives a power cut too.
- A move is one ``os.rename`` on the same filesystem. Across filesystems (``EXDEV``) it is such a
  copy followed by deleting the source: after a crash in between, both are whole.
- A link is a hard link, or a symlink to the source's absolute path across filesystems.

A destination that exists is never replaced (``FileExistsError``). Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil

from .._files import fsync

# Hidden (the folder walkers skip dot files), and named after its destination, so that after a
# crash the one temporary file an interrupted operation may have left is known from the log.
TEMP_SUFFIX = ".artstyle-sort.tmp"


def temp_path(final: str | os.PathLike) -> str:
    folder, name = os.path.split(os.fspath(final))
    return os.path.join(folder, f".{name}{TEMP_SUFFIX}")


def digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file's content (a symlink's target's)."""
    with open(path, "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
        return os.fstat(f.fileno()).st_size, sha


def make_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` and its missing parents, each one's entry fsynced in its parent."""
    folder = os.path.abspath(folder)
    if os.path.isdir(folder):
        return
    make_folder(os.path.dirname(folder))
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
    fsync(os.path.dirname(folder))


def refuse_existing(final: str | os.PathLike) -> None:
    if os.path.lexists(final):
        raise FileExistsError(errno.EEXIST, "exists; never overwritten", os.fspath(final))


def remove_temp(final: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp_path(final))


def copy_file(source: str, final: str, sha256: str) -> str:
    """Copy through the temporary name, rename into place. The source stays, so a power cut
    cannot lose the file: the copy's data is left to the page cache (a kill cannot tear it: it
    takes its name whole) and is checked by its size, not read back; the log's rows are fsynced."""
    checked_copy(source, final, sha256, durable=False)
    return "copy"


def checked_copy(source: str, final: str, sha256: str, *, durable: bool) -> None:
    """Copy through the temporary name, check it, rename into place. ``durable`` (a move, whose
    source goes next): the data fsynced and read back against ``sha256`` before the rename, and
    the folder fsynced after it."""
    refuse_existing(final)
    tmp = temp_path(final)
    try:
        shutil.copyfile(source, tmp)
        if durable:
            fsync(tmp)
        if (digest(tmp)[1] != sha256) if durable else (os.path.getsize(tmp) != os.path.getsize(source)):
            raise OSError(errno.EIO, "the copy differs from the source (source changed or bad disk)", source)
        refuse_existing(final)
        os.rename(tmp, final)
    finally:
        remove_temp(final)
    if durable:
        fsync(os.path.dirname(final))


def move_file(source: str, final: str, sha256: str) -> str:
    """Rename; across filesystems, a checked copy and then delete the source."""
    refuse_existing(final)
    try:
        os.rename(source, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        checked_copy(source, final, sha256, durable=True)
        try:
            os.unlink(source)
        except OSError:
            remove_file(final)  # the source cannot go: keep it, whole, and only it
            raise
    fsync(os.path.dirname(final))
    fsync(os.path.dirname(source))
    return "move"


def link_file(source: str, final: str, sha256: str) -> str:
    """A hard link; a symlink (to the absolute path) where hard links cannot reach. Returns which."""
    try:
        os.link(source, final)
        made = "link"
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        os.symlink(os.path.abspath(source), final)
        made = "symlink"
    fsync(os.path.dirname(final))
    return made


def remove_file(final: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(final)
    fsync(os.path.dirname(final))


MAKERS = {"copy": copy_file, "move": move_file, "link": link_file}
