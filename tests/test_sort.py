"""`artstyle sort` and artstyle.sort(): the shipped model on real artstyle-v1 images copied into
nested folders; copy, move, link, dry run, uncertain, name collisions, unreadable files, the log,
undo, and kill -9 at several moments followed by a re-run and an undo (as train --resume is tested)."""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import artstyle
from artstyle.cli import main
from artstyle.sorting import LOG_NAME
from artstyle.sorting._files import TEMP_SUFFIX, digest
from process_support import kill_when

LAYOUT = {"": 4, "trip": 4, "trip/day2": 4}  # sub-folder of SRC -> images in it (12 in all)
CLASSES = ("anime", "cartoon", "human")


@pytest.fixture(scope="module")
def clf():
    return artstyle.load(batch_size=4)


@pytest.fixture
def src(shared_data, tmp_path) -> Path:
    """12 real images (4 per class, spread over the sub-folders) in SRC/, SRC/trip/, SRC/trip/day2/."""
    root = tmp_path / "src"
    picks = [p for c in CLASSES for p in sorted((shared_data / c).glob("*.jpg"))[:4]]
    random.Random(0).shuffle(picks)
    for folder, count in LAYOUT.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for image in picks[:count]:
            shutil.copyfile(image, root / folder / image.name)
        picks = picks[count:]
    return root


def files(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every visible file below ``folder`` (the log and temporary files aside)."""
    return {str(p.relative_to(folder)): digest(p)[1] for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(f"*{TEMP_SUFFIX}")] if folder.exists() else []


def log_rows(dest: Path) -> list[dict]:
    with open(dest / LOG_NAME, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def sort_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["sort", *map(str, args), "--batch-size", "4", "--no-progress"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_copy_keeps_sub_folders_and_logs_each_file(clf, src, tmp_path):
    before = files(src)
    dest = tmp_path / "dest"
    records = artstyle.sort(src, dest, classifier=clf)
    assert files(src) == before  # copies leave the sources alone
    assert len(records) == 12 and all(r.ok and r.action == "copy" for r in records)
    for record in records:
        pred = clf.predict(record.source)
        rel = Path(record.source).relative_to(src)
        assert record.label == pred.label and record.confidence == pytest.approx(pred.confidence)
        assert Path(record.destination) == dest / pred.label / rel
        assert digest(record.destination) == digest(record.source)
    assert {r.label for r in records} == set(CLASSES)  # the shipped model tells these apart
    rows = log_rows(dest)
    assert sorted((r["op"], r["status"]) for r in rows) == sorted((str(op), s) for op in range(1, 13)
                                                                   for s in ("intent", "done"))
    position = {(r["op"], r["status"]): i for i, r in enumerate(rows)}
    assert all(position[op, "intent"] < position[op, "done"] for op, _ in position)  # intent first
    done = {Path(dest / r["destination"]): r for r in rows if r["status"] == "done"}
    for record in records:
        row = done[Path(record.destination)]
        assert row["source"] == str(record.source) and row["label"] == record.label
        assert (int(row["size"]), row["sha256"]) == digest(record.source)
    assert not temp_files(dest)


def test_move_flat_never_overwrites_a_name_and_says_so(clf, src, tmp_path):
    dest = tmp_path / "dest"
    # The same file name in two sub-folders, and a name already taken in DEST by another file.
    twin = src / "trip" / "day2" / sorted(src.glob("*.jpg"))[0].name
    shutil.copyfile(src / twin.name, twin)
    label = clf.predict(twin).label
    (dest / label).mkdir(parents=True)
    (dest / label / twin.name).write_bytes(b"a file that was there first")
    contents = set(files(src).values())
    records = artstyle.sort(src, dest, mode="move", flat=True, classifier=clf)
    assert files(src) == {} and all(r.ok and r.action == "move" for r in records)
    assert (dest / label / twin.name).read_bytes() == b"a file that was there first"
    stem, ext = os.path.splitext(twin.name)
    renamed = sorted(r.destination for r in records if r.note)
    assert renamed == [str(dest / label / f"{stem}-1{ext}"), str(dest / label / f"{stem}-2{ext}")]
    note = f"renamed: {label}/{twin.name} already exists"
    assert [r.note for r in records if r.note] == [note, note]
    assert [row["note"] for row in log_rows(dest) if row["status"] == "done" and row["note"]] == [note, note]
    sorted_files = files(dest)
    assert all(rel.count(os.sep) == 1 for rel in sorted_files)  # flat: straight into the class folders
    assert set(sorted_files.values()) - contents == {digest(dest / label / twin.name)[1]}


def test_link_is_a_hard_link_or_a_symlink_across_filesystems(clf, src, tmp_path):
    dest = tmp_path / "dest"
    records = artstyle.sort(src, dest, mode="link", classifier=clf)
    assert all(r.action == "link" and os.path.samefile(r.source, r.destination) for r in records)
    assert not any(os.path.islink(r.destination) for r in records)
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to link across")
    far = Path(os.environ.get("TMPDIR_SHM", other)) / f"artstyle-sort-{os.getpid()}-{tmp_path.name}"
    try:
        records = artstyle.sort(src / "trip", far, mode="link", classifier=clf)
        assert all(r.action == "symlink" and os.readlink(r.destination) == str(Path(r.source).absolute())
                   for r in records)
        assert all(r.action == "undo-symlink" for r in artstyle.sort_undo(far))
        assert files(far) == {} and len(files(src)) == 12
    finally:
        shutil.rmtree(far, ignore_errors=True)


def test_dry_run_prints_the_plan_and_touches_nothing(capsys, src, tmp_path):
    dest = tmp_path / "dest"
    before = files(src)
    code, out, err = sort_cli(capsys, src, "-o", dest, "--move", "--dry-run")
    assert code == 0 and not dest.exists() and files(src) == before
    plan = list(csv.DictReader(out.splitlines()))
    assert len(plan) == 12 and {row["action"] for row in plan} == {"move"}
    assert "would move 12 files" in err and "nothing changed" in err
    code, out, _ = sort_cli(capsys, src, "-o", dest, "--move")
    assert code == 0 and out.startswith("moved 12 files")
    assert sorted(row["destination"] for row in plan) == sorted(str(dest / rel) for rel in files(dest))


def test_below_min_confidence_goes_to_uncertain(clf, src, tmp_path):
    confidences = sorted(p.confidence for p in clf.predict(sorted(map(str, src.rglob("*.jpg")))))
    threshold = (confidences[3] + confidences[4]) / 2  # the 4 least confident go to uncertain/
    records = artstyle.sort(src, tmp_path / "dest", min_confidence=threshold, classifier=clf)
    uncertain = [r for r in records if r.label == "uncertain"]
    assert len(uncertain) == 4 and all(r.confidence < threshold for r in uncertain)
    assert all(Path(r.destination).relative_to(tmp_path / "dest").parts[0] == "uncertain" for r in uncertain)
    assert all(r.confidence >= threshold for r in records if r not in uncertain)


def test_unreadable_files_stay_put_and_are_listed_one_line_each(capsys, src, tmp_path):
    (src / "trip" / "notes.jpg").write_text("not an image")
    good = next(src.glob("*.jpg"))
    (src / "trip" / "day2" / "cut.jpg").write_bytes(good.read_bytes()[:200])
    dest = tmp_path / "dest"
    code, out, err = sort_cli(capsys, src, "-o", dest, "--move")
    assert code == 2
    failures = [line for line in err.splitlines() if line.startswith("artstyle: error:")]
    assert len(failures) == 2 and {line.split(": ")[2] for line in failures} == {
        str(src / "trip" / "notes.jpg"), str(src / "trip" / "day2" / "cut.jpg")}
    assert "2 of 14 files could not be sorted" in err and out.startswith("moved 12 files")
    assert set(files(src)) == {"trip/notes.jpg", "trip/day2/cut.jpg"}  # the unreadable ones, untouched
    assert len(files(dest)) == 12


def test_undo_reverses_all_but_a_changed_file_or_a_taken_name(capsys, clf, src, tmp_path):
    before = files(src)
    dest = tmp_path / "dest"
    records = artstyle.sort(src, dest, mode="move", classifier=clf)
    changed, taken = Path(records[5].destination), Path(records[6].source)
    changed.write_bytes(changed.read_bytes() + b"edited")
    taken.write_bytes(b"a new file at the old name")
    code, out, err = sort_cli(capsys, "--undo", dest)
    assert code == 2 and "undid 10 operations" in out
    assert sorted(err.splitlines()) == sorted([
        f"artstyle: error: {records[6].destination}: not moved back: {taken} exists again (never overwritten)",
        f"artstyle: error: {changed}: changed since it was sorted (size/sha256 differ); left as it is",
    ])
    kept = {str(Path(r.source).relative_to(src)) for r in records[5:7]}
    restored = files(src)
    assert {k: v for k, v in restored.items() if k not in kept} == {k: v for k, v in before.items() if k not in kept}
    assert restored[str(taken.relative_to(src))] == digest(taken)[1]  # the new file, untouched
    assert set(files(dest)) == {str(Path(r.destination).relative_to(dest)) for r in records[5:7]}
    # A copy is undone by removing it; the empty folders go too, the log stays.
    copies = tmp_path / "copies"
    artstyle.sort(src, copies, classifier=clf)
    assert all(r.action == "undo-copy" and r.ok for r in artstyle.sort_undo(copies))
    assert os.listdir(copies) == [LOG_NAME] and files(src) == restored
    assert artstyle.sort_undo(copies) == []  # nothing left to undo


def test_a_rerun_sorts_only_the_new_files(clf, src, tmp_path):
    dest = tmp_path / "dest"
    artstyle.sort(src, dest, classifier=clf)
    new = src / "trip" / "new.jpg"
    shutil.copyfile(next(src.glob("*.jpg")), new)
    records = artstyle.sort(src, dest, classifier=clf)
    assert sorted(r.action for r in records) == ["copy"] + ["skip"] * 12
    (copied,) = [r for r in records if r.action == "copy"]
    assert copied.source == str(new) and Path(copied.destination).name == "new.jpg"
    # A row cut short by a power cut (never fsynced, so never acted on) is dropped.
    with open(dest / LOG_NAME, "ab") as log:
        log.write(b"99,inte")
    new.write_bytes(new.read_bytes() + b"\0")  # changed: sorted again, under a new name
    (again,) = [r for r in artstyle.sort(src, dest, classifier=clf) if r.action == "copy"]
    assert Path(again.destination).name == "new-1.jpg" and again.note == f"renamed: {copied.label}/trip/new.jpg already exists"
    assert (dest / LOG_NAME).read_bytes().endswith(b"\n") and b"99,inte" not in (dest / LOG_NAME).read_bytes()
    # DEST inside SRC: what is sorted is not sorted again.
    inner = src / "sorted"
    assert len(artstyle.sort(src, inner, classifier=clf)) == 13
    assert len(artstyle.sort(src, inner, classifier=clf)) == 13 and len(files(inner)) == 13


def test_two_sorts_never_work_in_one_dest_at_once(clf, src, tmp_path):
    from artstyle.sorting._log import SortLog

    with SortLog(tmp_path / "dest", writable=True):  # holds the lock as a running sort does
        with pytest.raises(artstyle.ArtstyleError, match="another artstyle sort is working in this folder"):
            artstyle.sort(src, tmp_path / "dest", classifier=clf)
    assert len(artstyle.sort(src, tmp_path / "dest", classifier=clf)) == 12


def test_sorting_imports_no_model_runtime():
    probe = "import sys, artstyle.sorting; print(sorted({'onnxruntime', 'pandas', 'torch', 'cv2'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


# ----------------------------------------------------------------------------- kill -9


def test_each_state_a_kill_can_leave_is_settled_by_the_next_run(clf, src, tmp_path):
    """The states a kill leaves, made on purpose: the next run finishes or drops each operation
    from what is on disk, clears the temporary files and then sorts the rest."""
    from artstyle.sorting._log import SortLog

    dest = tmp_path / "dest"
    originals = sorted(files(src).values())
    a, b, c, d = sorted(src.glob("*.jpg"))
    with SortLog(dest, writable=True) as log:
        def intent(action: str, source: Path) -> Path:
            size, sha = digest(source)
            log.append({"op": log.new_op(), "status": "intent", "action": action, "source": str(source),
                        "destination": f"anime/{source.name}", "label": "anime", "confidence": "0.9",
                        "size": size, "sha256": sha})
            (dest / "anime").mkdir(exist_ok=True)
            return dest / "anime" / source.name

        # A move across filesystems whose checked copy has its name; the source is not deleted yet.
        shutil.copyfile(a, intent("move", a))
        # A copy and a move cut short while their temporary files were written.
        for action, source in (("copy", b), ("move", c)):
            final = intent(action, source)
            (final.parent / f".{final.name}{TEMP_SUFFIX}").write_bytes(source.read_bytes()[:100])
        # A copy renamed into place, its done row not yet written.
        shutil.copyfile(d, intent("copy", d))
    records = {Path(r.source).name: r for r in artstyle.sort(src, dest, classifier=clf)}
    settled = {r["op"]: (r["status"], r["note"]) for r in log_rows(dest)
               if r["op"] in ("1", "2", "3", "4") and r["status"] != "intent"}
    assert settled == {"1": ("done", "interrupted"), "2": ("dropped", "interrupted"),
                       "3": ("dropped", "interrupted"), "4": ("done", "interrupted")}
    assert not a.exists() and (dest / "anime" / a.name).is_file()  # the move, finished
    assert records[d.name].action == "skip" and a.name not in records  # done already: not sorted again
    assert all(records[f.name].action == "copy" and f.exists() for f in (b, c))  # sorted by this run
    assert not temp_files(dest) and sorted(files(dest).values()) == originals  # each file once, whole


def launch(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "artstyle", "sort", *args, "--batch-size", "2", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def log_lines(dest: Path) -> list[str]:
    try:
        return (dest / LOG_NAME).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


# Kill moments, each counted from the log rows there were at launch (``start``).
def after_rows(n: int):
    return lambda dest, start: len(log_lines(dest)) >= start + n


def mid_operation(n: int):
    """Between an operation's intent row and its done row."""
    def moment(dest, start):
        lines = log_lines(dest)
        return len(lines) >= start + n and lines[-1].split(",")[1:2] == ["intent"]

    return moment


def writing_a_temp_file(dest, start):
    # Past the start, where a leftover temporary file of the last kill was cleared.
    return len(log_lines(dest)) > start and bool(temp_files(dest))


def check_nothing_lost(originals: dict[str, str], src: Path, dest: Path, mode: str) -> None:
    """Every file whole at its source or at a destination, none half-written under a final name."""
    at_source, at_dest = files(src), files(dest)
    assert set(at_dest.values()) <= set(originals.values())  # nothing partial or foreign in DEST
    for rel, sha in originals.items():
        if mode == "copy":
            assert at_source.get(rel) == sha
        else:
            assert at_source.get(rel) == sha or sha in at_dest.values(), rel


def other_filesystem(tmp_path: Path) -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        return shm / f"artstyle-sort-kill-{os.getpid()}"
    return None


@pytest.mark.parametrize("mode, across", [("move", True), ("copy", False)])
def test_kill_9_at_any_moment_loses_nothing_and_a_rerun_and_undo_finish(src, tmp_path, mode, across):
    """kill -9 after a random number of log rows, between an intent and its done row, while a
    temporary file is being written, and at a random moment; after each, every file is whole
    somewhere; then a re-run sorts each file exactly once and an undo restores SRC."""
    dest = other_filesystem(tmp_path) if across else tmp_path / "dest"
    if dest is None:
        pytest.skip("no second filesystem (/dev/shm) for a move across filesystems")
    originals = files(src)
    args = [str(src), "-o", str(dest), f"--{mode}"]
    rng = random.Random(21)
    try:
        killed = 0
        moments = {"after some rows": after_rows(rng.randint(3, 8)),
                   "between an intent and its done row": mid_operation(rng.randint(2, 8)),
                   "while a temporary file is written": writing_a_temp_file}
        for name, moment in moments.items():
            start = len(log_lines(dest))
            cut = kill_when(launch(args), lambda moment=moment, start=start: moment(dest, start), may_finish=True)
            print(f"{name}: {'killed' if cut else 'finished first'}")
            killed += cut
            check_nothing_lost(originals, src, dest, mode)
        delay = rng.uniform(0.5, 3.0)
        proc, start = launch(args), time.time()
        killed += kill_when(proc, lambda: time.time() - start > delay, may_finish=True)
        check_nothing_lost(originals, src, dest, mode)
        assert killed >= 2  # the run really was cut short, more than once

        finished = subprocess.run([sys.executable, "-m", "artstyle", "sort", *args, "--batch-size", "4"],
                                  capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert not temp_files(dest)
        rows = log_rows(dest)
        print("settled after a kill:", [(r["action"], r["status"]) for r in rows if r["note"] == "interrupted"])
        ops = {row["op"] for row in rows}
        assert all(sum(r["op"] == op and r["status"] != "intent" for r in rows) == 1 for op in ops)  # all settled
        at_dest = files(dest)
        assert sorted(at_dest.values()) == sorted(originals.values())  # each file sorted exactly once
        assert files(src) == (originals if mode == "copy" else {})

        # An undo is logged the same way: killed between an intent and its done row, then run again.
        proc = subprocess.Popen([sys.executable, "-m", "artstyle", "sort", "--undo", str(dest)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        start = len(log_lines(dest))
        print("undo:", "killed" if kill_when(proc, lambda: mid_operation(1)(dest, start), may_finish=True)
              else "finished first")
        check_nothing_lost(originals, src, dest, mode)
        undone = subprocess.run([sys.executable, "-m", "artstyle", "sort", "--undo", str(dest)],
                                capture_output=True, text=True, timeout=300)
        assert undone.returncode == 0, undone.stderr
        assert files(src) == originals and files(dest) == {} and not temp_files(src)
    finally:
        if across:
            shutil.rmtree(dest, ignore_errors=True)
