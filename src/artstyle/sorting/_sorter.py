"""``artstyle.sort``: classify files and copy, move or link each into ``DEST/<label>/``, with a
crash-safe log that a re-run and ``undo`` read (``_log``) and file operations that a kill leaves
whole (``_files``).

The predictor classifies while the files are handled: its decode threads and model streams run
ahead while a few I/O threads hash, copy, fsync and log, so the file work hides behind the
model's; destinations are chosen in input order, and records come back in it. Whatever the
predictor returns a row for is sorted, so any input kind it learns to read can be sorted too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import ArtstyleError
from ._files import MAKERS, digest, fsync, make_folder, move_file, remove_file, remove_temp
from ._log import LOG_NAME, UNDO, SortLog

MODES = tuple(MAKERS)
# File operations in flight at once. Each waits on fsyncs (the log's twice, the copy's, the
# folder's), not on the CPU, and the filesystem commits overlapping fsyncs together. On a busy
# 2-CPU machine one thread took 13-17 ms a file, more than the predictor's 11-13 ms an image, and
# `sort --copy` trailed `predict` by 46 %; with four it keeps up (bench/bench_sort.py).
IO_THREADS = 4
# The label of a prediction below min_confidence (the predictor's own name for it).
UNCERTAIN = "uncertain"


@dataclass
class SortRecord:
    """What happened to one file (or would, in a dry run). ``action``: copy, move, link or symlink;
    ``skip`` for a file the log says is already sorted; ``undo-<action>`` when undoing; None with
    ``error`` set when the file was left where it is. ``note`` says why a name was changed."""

    source: str
    destination: str | None = None
    label: str | None = None
    confidence: float | None = None
    action: str | None = None
    error: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class SortInput:
    """A file to sort and the sub-folder below its SRC argument that is kept under its class folder."""

    path: str
    folder: str = ""


# ----------------------------------------------------------------------------- inputs


def collect_inputs(src, dest: str | os.PathLike) -> list[SortInput]:
    """Files, folders (recursive), globs and ``-`` (a list on stdin), expanded as ``artstyle
    predict`` does, each with the sub-folder it sits in below its argument. Files already inside
    DEST are left out (DEST may lie inside SRC); a file named twice is sorted once. No files at
    all is an error, unless DEST holds an earlier sort's log."""
    from ..infer.sources import expand_one, is_url, read_list

    args = [src] if isinstance(src, (str, os.PathLike, SortInput)) else list(src)
    inside_dest = folder_test(os.path.realpath(dest))
    seen: set[str] = set()
    inputs = []
    for arg in args:
        if isinstance(arg, SortInput):
            inputs.append(arg)
            continue
        arg = os.fspath(arg)
        for one in read_list(sys.stdin) if arg == "-" else [arg]:
            if is_url(one):
                raise ArtstyleError(f"{one}: sort takes local files, folders and globs, not URLs")
            root = root_of(one)
            for path in expand_one(one):
                key = os.path.abspath(path)
                if key not in seen and not inside_dest(os.path.dirname(key)):
                    seen.add(key)
                    inputs.append(SortInput(path, subfolder(path, root)))
    # Nothing left after an earlier sort into DEST (a move): not a mistake, and the run still
    # settles what a kill may have interrupted there.
    if not inputs and not (Path(dest) / LOG_NAME).is_file():
        raise ArtstyleError(f"no images found in {' '.join(os.fspath(a) for a in args if isinstance(a, (str, os.PathLike)))}")
    return inputs


def folder_test(dest_real: str):
    @lru_cache(maxsize=None)
    def inside(folder: str) -> bool:
        real = os.path.realpath(folder)
        return real == dest_real or real.startswith(dest_real + os.sep)

    return inside


def root_of(arg: str) -> str:
    """The folder whose sub-folders are kept: a folder argument itself, a glob's fixed leading
    folders ('photos/**/*.png' -> 'photos'), a file's own folder."""
    if os.path.isdir(arg):
        return arg
    if not os.path.lexists(arg) and glob.has_magic(arg):
        fixed = []
        for part in Path(arg).parts:
            if glob.has_magic(part):
                break
            fixed.append(part)
        return os.path.join(*fixed) if fixed else "."
    return os.path.dirname(arg) or "."


def subfolder(path: str, root: str) -> str:
    rel = os.path.relpath(os.path.dirname(path), root)
    return "" if rel == "." or rel.startswith("..") else rel


def check_folder_names(classes: Iterable[str], model) -> None:
    """Class names become folder names: refuse one that would point elsewhere."""
    for name in [*classes, UNCERTAIN]:
        if not name or name in (".", "..") or any(c in name for c in ("/", "\\", "\0")):
            raise ArtstyleError(f"{model or 'the model'}: class {name!r} cannot be a folder name")


class Names:
    """Free destination names: one already in DEST (or given to an earlier file of this run)
    is never reused; the new file gets ``name-1.jpg``, ``name-2.jpg``, ..."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.given: set[str] = set()

    def claim(self, rel: str) -> tuple[str, str]:
        stem, ext = os.path.splitext(rel)
        candidate, n = rel, 0
        while candidate in self.given or os.path.lexists(self.dest / candidate):
            n += 1
            candidate = f"{stem}-{n}{ext}"
        self.given.add(candidate)
        return candidate, (f"renamed: {rel} already exists" if n else "")


# ----------------------------------------------------------------------------- the log's operations


def reason(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return f"{text} ({exc.filename})" if exc.filename else text


def perform(log: SortLog, row: dict, act) -> str:
    """Log the intent, act, log the outcome. An error mid-way is settled from the files, as
    after a crash, so the log never says done for what is not, or the reverse; it is raised
    when the operation did not take effect."""
    log.append({**row, "status": "intent"})
    try:
        made = act() or row["action"]
    except OSError as exc:
        finished, made = close(log, row, reason(exc))
        if not finished:
            raise
        return made
    log.append({**row, "action": made, "status": "done"})
    return made


def close(log: SortLog, row: dict, note: str) -> tuple[bool, str]:
    """Write the missing done/dropped row of an interrupted operation, after finishing or undoing
    its half-done part (a leftover temporary file, a source not yet deleted)."""
    finished, action = settle(log, row)
    log.append({**row, "action": action, "status": "done" if finished else "dropped", "note": note})
    return finished, action


def reconcile(log: SortLog) -> list[dict]:
    """Settle the operations a kill interrupted; returns their intent rows."""
    interrupted = log.open_intents()
    for row in interrupted:
        try:
            close(log, row, "interrupted")
        except OSError as exc:
            raise ArtstyleError(f"{log.path}: cannot settle the interrupted operation on "
                                f"{row['destination']} ({reason(exc)})") from None
    return interrupted


def settle(log: SortLog, row: dict) -> tuple[bool, str]:
    """Whether an interrupted operation took effect (finishing a move whose copy is in place)."""
    action, source, sha = row["action"], row["source"], row["sha256"]
    final = str(log.dest / row["destination"])
    if action == "move":
        return settle_move(source, final, sha), action
    if action == UNDO + "move":
        return settle_move(final, source, sha), action
    if action.startswith(UNDO):
        return not os.path.lexists(final), action
    if action == "copy":
        remove_temp(final)
        return sha256_or_none(final) == sha, action
    return os.path.lexists(final), ("symlink" if os.path.islink(final) else "link")


def sha256_or_none(path: str) -> str | None:
    try:
        return digest(path)[1]
    except OSError:  # gone, a folder, unreadable
        return None


def settle_move(origin: str, final: str, sha: str) -> bool:
    remove_temp(final)
    if not os.path.lexists(final):
        return False
    if not os.path.lexists(origin):
        return True
    # Both there: across filesystems the checked copy got its name, the original was not deleted yet.
    if sha256_or_none(final) != sha:
        return False  # not our file: leave both as they are
    if sha256_or_none(origin) != sha:
        return True  # the move was done, and a new file has taken the old name since: keep it
    try:
        os.unlink(origin)
    except OSError:
        remove_file(final)  # the original stays whole where it was
        return False
    fsync(os.path.dirname(origin) or ".")
    return True


# ----------------------------------------------------------------------------- sort


def sort_iter(src, dest: str | os.PathLike, *, mode: str = "copy", min_confidence: float = 0.0,
              dry_run: bool = False, flat: bool = False, classifier=None, model=None,
              **load_options) -> Iterator[SortRecord]:
    """``sort`` as a stream of records: the files already sorted first, then the others in input
    order, each once it is handled."""
    if mode not in MODES:
        raise ArtstyleError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not 0.0 <= min_confidence <= 1.0:
        raise ArtstyleError(f"min_confidence must be between 0 and 1, got {min_confidence}")
    inputs = collect_inputs(src, dest)
    with SortLog(dest, writable=not dry_run) as log:
        if not dry_run:
            # A move a kill interrupted may have been finished just now: its source is gone.
            moved = {row["source"] for row in reconcile(log) if row["action"] == "move"}
            inputs = [i for i in inputs if os.path.abspath(i.path) not in moved or os.path.lexists(i.path)]
        todo = []
        done_before = {row["source"]: row for row in log.sorted_files().values() if row["action"] != "move"}
        for item in inputs:
            row = done_before.get(os.path.abspath(item.path))
            if row is not None and same_size(item.path, row):
                yield SortRecord(item.path, str(log.dest / row["destination"]), row["label"],
                                 float(row["confidence"]), "skip", note="already sorted")
            else:
                todo.append(item)
        if not todo:
            return
        if classifier is None:
            from ..infer import load

            classifier = load(model, **load_options)
        check_folder_names(classifier.classes, model)
        yield from Sorter(log, mode, min_confidence, flat, dry_run).run(classifier, todo)


def sort(src, dest: str | os.PathLike, *, mode: str = "copy", min_confidence: float = 0.0,
         dry_run: bool = False, flat: bool = False, classifier=None, model=None, **load_options) -> list[SortRecord]:
    """Classify ``src`` (files, folders, globs, or a list of them) and copy (``mode="copy"``),
    move (``"move"``) or hard-link (``"link"``; a symlink across filesystems) each file into
    ``dest/<label>/``, below it the sub-folders it had under its SRC (none with ``flat``).

    A prediction below ``min_confidence`` goes to ``dest/uncertain/``. An unreadable file stays
    where it is; its record has ``error`` set. A name already in ``dest`` is never overwritten:
    the file gets ``name-1.jpg`` (its record's ``note`` says so). Every operation is logged in
    ``dest/.artstyle-sort.csv`` as it happens, which ``undo(dest)`` reverses and which a re-run
    reads to skip what is already sorted. A ``kill -9`` at any moment leaves every file whole at
    its source or at its destination; the next run or undo finishes the interrupted operation.

    ``dry_run``: the plan, with nothing touched. ``classifier``: a loaded ``artstyle.load()``;
    otherwise ``model`` and ``load_options`` (precision, batch_size, threads, streams, workers)
    load one. Returns one ``SortRecord`` per file, in input order.
    """
    return list(sort_iter(src, dest, mode=mode, min_confidence=min_confidence, dry_run=dry_run, flat=flat,
                          classifier=classifier, model=model, **load_options))


def same_size(path: str, row: dict) -> bool:
    try:
        return str(os.path.getsize(path)) == row["size"]
    except OSError:
        return False


def ready(record: SortRecord) -> Future:
    future: Future = Future()
    future.set_result(record)
    return future


class Sorter:
    """One sort run: plans each prediction's destination in order, and hands the file work to
    I/O threads so that the predictor keeps classifying meanwhile."""

    def __init__(self, log: SortLog, mode: str, min_confidence: float, flat: bool, dry_run: bool):
        self.log, self.mode, self.min_confidence = log, mode, min_confidence
        self.flat, self.dry_run = flat, dry_run
        self.names = Names(log.dest)

    def run(self, classifier, todo: list[SortInput]) -> Iterator[SortRecord]:
        waiting = {item.path: item for item in todo}
        io = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="artstyle-sort")
        pending: deque[Future] = deque()
        try:
            for pred in classifier.predict_iter([item.path for item in todo]):
                item = waiting.pop(pred.source, None)
                if item is None:
                    continue  # a further row for a file already handled
                record = self.plan(item, pred)
                pending.append(ready(record) if self.dry_run or not record.ok else io.submit(self.execute, record))
                while pending and pending[0].done():
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            # Ctrl-C or a consumer that stops: the operation in progress ends whole, the rest are dropped.
            io.shutdown(wait=True, cancel_futures=True)

    def plan(self, item: SortInput, pred) -> SortRecord:
        if not pred.ok:
            return SortRecord(item.path, error=pred.error)
        label = pred.label if pred.confidence >= self.min_confidence else UNCERTAIN
        rel = os.path.join(label, "" if self.flat else item.folder, os.path.basename(item.path))
        rel, note = self.names.claim(rel)
        return SortRecord(item.path, str(self.log.dest / rel), label, pred.confidence, self.mode, note=note)

    def execute(self, record: SortRecord) -> SortRecord:
        source, final = record.source, record.destination
        try:
            size, sha = digest(source)
            make_folder(os.path.dirname(final))
            row = {"op": self.log.new_op(), "action": self.mode, "source": os.path.abspath(source),
                   "destination": os.path.relpath(final, self.log.dest), "label": record.label,
                   "confidence": f"{record.confidence:.6f}", "size": size, "sha256": sha, "note": record.note}
            made = perform(self.log, row, lambda: MAKERS[self.mode](source, final, sha))
        except OSError as exc:
            return replace(record, action=None, error=f"not sorted: {reason(exc)}")
        return replace(record, action=made)


# ----------------------------------------------------------------------------- undo


def undo_iter(dest: str | os.PathLike, *, dry_run: bool = False) -> Iterator[SortRecord]:
    """``undo`` as a stream of records, newest operation first."""
    if not (Path(dest) / LOG_NAME).is_file():
        raise ArtstyleError(f"{dest}: no sort log ({LOG_NAME}) here, nothing to undo")
    with SortLog(dest, writable=not dry_run) as log:
        if not dry_run:
            reconcile(log)
        rows = list(log.sorted_files().values())[::-1]
        for row in rows:
            yield undo_one(log, row, dry_run)
        if not dry_run:
            remove_empty_folders(log.dest, rows)


def undo(dest: str | os.PathLike, *, dry_run: bool = False) -> list[SortRecord]:
    """Reverse what ``sort`` did in ``dest``, newest first: moved files go back to their source,
    copies and links are removed. A file that changed since it was sorted (size or sha256), or
    whose source name is taken again, is refused (its record's ``error`` says why) and the
    others are still undone. Undoing is logged like sorting, so it is as safe to interrupt."""
    return list(undo_iter(dest, dry_run=dry_run))


def undo_one(log: SortLog, row: dict, dry_run: bool) -> SortRecord:
    final, source, action = str(log.dest / row["destination"]), row["source"], row["action"]
    record = SortRecord(source, final, row["label"], float(row["confidence"]), UNDO + action)
    problem = undo_refusal(row, final)
    if problem or dry_run:
        return replace(record, action=None, error=problem) if problem else record
    undo_row = {**row, "op": log.new_op(), "action": UNDO + action, "note": ""}

    def move_back() -> None:
        make_folder(os.path.dirname(source))
        move_file(final, source, row["sha256"])

    try:
        perform(log, undo_row, move_back if action == "move" else lambda: remove_file(final))
    except OSError as exc:
        return replace(record, action=None, error=f"not undone: {reason(exc)}")
    return record


def undo_refusal(row: dict, final: str) -> str | None:
    """Why a sorted file must be left as it is, or None."""
    action, source = row["action"], row["source"]
    if not os.path.lexists(final):
        return "missing, cannot be moved back" if action == "move" else None  # a removed copy: nothing to do
    if action == "symlink":
        return None if os.path.islink(final) and os.readlink(final) == source else f"no longer a link to {source}; left as it is"
    try:
        size, sha = digest(final)
    except OSError as exc:
        return f"cannot be read ({reason(exc)}); left as it is"
    if (str(size), sha) != (row["size"], row["sha256"]):
        return "changed since it was sorted (size/sha256 differ); left as it is"
    if action == "move" and os.path.lexists(source):
        return f"not moved back: {source} exists again (never overwritten)"
    return None


def remove_empty_folders(dest: Path, rows: list[dict]) -> None:
    """The class and sub-folders that undo emptied (DEST itself and its log stay)."""
    folders = set()
    for row in rows:
        folder = os.path.dirname(row["destination"])
        while folder:
            folders.add(folder)
            folder = os.path.dirname(folder)
    for folder in sorted(folders, key=lambda f: -f.count(os.sep)):
        with contextlib.suppress(OSError):
            os.rmdir(dest / folder)
