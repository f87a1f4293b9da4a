"""The sort log, ``DEST/.artstyle-sort.csv``: every file operation in DEST, appended as it happens.

Each operation is two rows with the same ``op`` number: an ``intent`` row, written and fsynced
before the file is touched, then ``done`` once it is (or ``dropped`` when it failed or was rolled
back). After a ``kill -9`` an intent without its second row is the one operation that may have
been interrupted; ``Sorter.reconcile`` looks at the files, finishes or rolls it back and writes the
missing row, so a re-run or an undo starts from a log that says exactly what is in DEST.

``destination`` is relative to DEST (the sorted folder may be moved); ``source`` is absolute.
A writer holds an exclusive ``flock`` on the log (the kernel drops it when the process dies,
``kill -9`` included), so two sorts never work in one DEST at once. Standard library only.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import threading
from pathlib import Path

from ..errors import ArtstyleError
from ._files import fsync

LOG_NAME = ".artstyle-sort.csv"
COLUMNS = ("op", "status", "action", "source", "destination", "label", "confidence", "size", "sha256", "note")
UNDO = "undo-"  # prefix of the actions that reverse a sort: undo-copy, undo-move, ...


def format_row(row: dict) -> bytes:
    line = io.StringIO()
    csv.DictWriter(line, fieldnames=COLUMNS, lineterminator="\n").writerow({k: row.get(k, "") for k in COLUMNS})
    return line.getvalue().encode("utf-8")


STATUSES = ("intent", "done", "dropped")


def parse(text: str, path: Path) -> list[dict]:
    """The rows of a log's text, up to its last whole line."""
    reader = csv.DictReader(io.StringIO(text[: text.rfind("\n") + 1]))
    if text and tuple(reader.fieldnames or ()) != COLUMNS:
        raise ArtstyleError(f"{path}: not an artstyle sort log (its columns are not {','.join(COLUMNS)})")
    rows = list(reader)
    for line, row in enumerate(rows, start=2):
        if not (row["op"] or "").isdigit() or row["status"] not in STATUSES:
            raise ArtstyleError(f"{path}: line {line} is not a sort log row; the log was edited or damaged")
    return rows


class SortLog:
    """The log of one DEST. ``writable``: create DEST and the log, and lock it; otherwise only
    read what is there (a dry run touches nothing)."""

    def __init__(self, dest: str | os.PathLike, *, writable: bool):
        self.dest = Path(dest).absolute()
        self.path = self.dest / LOG_NAME
        self.fd: int | None = None
        self.lock = threading.Lock()  # several I/O threads append; each row is written whole
        if writable:
            self.rows = self.open_locked()
        else:
            self.rows = parse(self.path.read_text(encoding="utf-8"), self.path) if self.path.is_file() else []
        self.next_op = 1 + max((int(r["op"]) for r in self.rows), default=0)

    def open_locked(self) -> list[dict]:
        if self.dest.exists() and not self.dest.is_dir():
            raise ArtstyleError(f"{self.dest}: not a folder")
        self.dest.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise ArtstyleError(f"{self.dest}: another artstyle sort is working in this folder") from None
        data = self.drop_torn_row()
        if not data:
            self.write(",".join(COLUMNS).encode() + b"\n")
            fsync(self.dest)
        return parse(data.decode("utf-8"), self.path)

    def drop_torn_row(self) -> bytes:
        """A row cut short (a power cut mid-write) was never fsynced, so nothing acted on it: drop it."""
        with open(self.path, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            os.ftruncate(self.fd, len(data))
        return data

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)
        os.fsync(self.fd)

    def append(self, row: dict) -> None:
        """One row, on disk (fsynced) when this returns. Threads' fsyncs overlap (the filesystem
        commits them together), which is what keeps the file work behind the model's."""
        with self.lock:
            os.write(self.fd, format_row(row))
            self.rows.append({k: str(row.get(k, "")) for k in COLUMNS})
        os.fsync(self.fd)

    def new_op(self) -> int:
        with self.lock:
            op, self.next_op = self.next_op, self.next_op + 1
        return op

    def open_intents(self) -> list[dict]:
        """Intents without their done/dropped row: operations a crash interrupted."""
        intents: dict[str, dict] = {}
        for row in self.rows:
            if row["status"] == "intent":
                intents[row["op"]] = row
            else:
                intents.pop(row["op"], None)
        return list(intents.values())

    def sorted_files(self) -> dict[str, dict]:
        """destination -> its done row, for what is sorted into DEST and not undone, oldest first."""
        active: dict[str, dict] = {}
        for row in self.rows:
            if row["status"] != "done":
                continue
            if row["action"].startswith(UNDO):
                active.pop(row["destination"], None)
            else:
                active[row["destination"]] = row
        return active

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # also releases the lock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
