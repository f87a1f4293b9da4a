"""artstyle.data on real files: scan, split, show, audit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corpus import expected_invalid, make_bad_corpus
from PIL import Image

pd = pytest.importorskip("pandas", reason="needs the data extra: pip install 'artstyle[data]'")
for _extra in ("imagehash", "scipy", "sklearn", "matplotlib"):
    pytest.importorskip(_extra, reason="needs the data extra: pip install 'artstyle[data]'")

from artstyle import data  # noqa: E402
from artstyle.data import scanner as scan_module  # noqa: E402
from artstyle.errors import ArtstyleError  # noqa: E402

COLUMNS = [
    "path",
    "label",
    "label_idx",
    "width",
    "height",
    "format",
    "mode",
    "bytes",
    "sha256",
    "phash",
    "valid",
    "error",
    "split",
    "group",
]


def write_image(path: Path, seed: int, size=(48, 40), fmt=None) -> Path:
    """A distinct real image: smooth random blobs, so its perceptual hash differs from others'."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize(size, Image.BICUBIC).save(path, format=fmt)
    return path


def make_dataset(root: Path, counts: dict[str, int], size=(48, 40), seed=0) -> Path:
    for c, (label, n) in enumerate(sorted(counts.items())):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(root / label / f"{label}_{i:03d}.png", seed * 100_000 + c * 1000 + i, size)
    return root


# --- scan -------------------------------------------------------------------------------------


@pytest.fixture
def messy_dataset(tmp_path) -> tuple[Path, dict[str, Path]]:
    """Three classes of good images plus every bad file, nesting, hidden files, an empty class."""
    root = make_dataset(tmp_path / "data", {"anime": 3, "cartoon": 4, "human": 3})
    corpus = make_bad_corpus(root / "cartoon" / "odd files")  # nested and space in folder name
    write_image(root / "human" / ".hidden.png", 99)
    (root / "human" / ".cache").mkdir()
    write_image(root / "human" / ".cache" / "thumb.png", 98)
    (root / "human" / "notes.txt").write_text("not an image")
    (root / "zzz_empty").mkdir()
    write_image(root / "loose.png", 97)  # not in a class folder
    (root / "anime" / "deeper").mkdir()
    (root / "anime" / "deeper" / "up").symlink_to(root / "anime", target_is_directory=True)  # a folder loop
    return root, corpus


def test_scan_writes_a_complete_manifest_and_survives_every_bad_file(messy_dataset, tmp_path):
    root, corpus = messy_dataset
    df = data.scan(root, tmp_path / "out" / "manifest.csv", progress=False)

    assert list(df.columns) == COLUMNS
    good_count = 3 + 4 + 3
    assert len(df) == good_count + len(corpus)  # nothing hidden, no .txt, no loose file, loop once
    assert df["path"].map(lambda p: Path(p).is_absolute()).all()
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == {"anime": 0, "cartoon": 1, "human": 2}
    assert (df["label_idx"] == df["label"].map({"anime": 0, "cartoon": 1, "human": 2})).all()
    assert (df["split"] == "").all()

    by_name = {Path(p).name: row for p, row in zip(df["path"], df.itertuples())}
    invalid = expected_invalid(corpus)
    for name, path in corpus.items():
        row = by_name[path.name]
        assert row.label == "cartoon"  # nested folders keep the class of their top folder
        if name in invalid:
            assert not row.valid and row.error and row.phash == "", name
        else:
            assert row.valid and row.error == "" and len(row.phash) == 16, (name, row.error)
    assert by_name["bomb_30000x30000.png"].error.startswith("too large")
    assert by_name["exif_rotated.jpg"].format == "JPEG" and by_name["cmyk.jpg"].mode == "CMYK"
    assert by_name["zero_byte.jpg"].bytes == 0

    notes = " ".join(df.attrs["notes"])
    assert "zzz_empty" in notes and "loose.png" in notes and "already scanned" in notes


def test_manifest_round_trips_with_correct_dtypes(messy_dataset, tmp_path):
    root, _ = messy_dataset
    scanned = data.scan(root, tmp_path / "manifest.csv", progress=False)
    read = data.read_manifest(tmp_path / "manifest.csv")
    assert read["valid"].dtype == bool and read["width"].dtype == np.int64
    assert read.loc[read["valid"], "error"].eq("").all() and read["split"].eq("").all()
    pd.testing.assert_frame_equal(read, scanned.reset_index(drop=True), check_like=False)
    assert (
        data.read_classes(tmp_path)
        == data.read_classes(tmp_path / "manifest.csv")
        == {"anime": 0, "cartoon": 1, "human": 2}
    )


def test_process_pool_gives_the_same_rows_as_a_serial_scan(messy_dataset, monkeypatch):
    root, _ = messy_dataset
    serial = data.scan(root, workers=1, progress=False)
    monkeypatch.setattr(scan_module, "SERIAL_BELOW", 0)
    pooled = data.scan(root, workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, pooled)


def test_scan_records_the_split_of_pre_split_folders(tmp_path):
    root = tmp_path / "presplit"
    make_dataset(root / "train", {"a": 3, "b": 3}, seed=1)
    make_dataset(root / "Validation", {"a": 1, "b": 1}, seed=2)
    make_dataset(root / "test", {"a": 1}, seed=3)
    df = data.scan(root, progress=False)
    assert df.groupby("split").size().to_dict() == {"test": 1, "train": 6, "val": 2}
    assert sorted(df["label"].unique()) == ["a", "b"]
    parts = data.split(df)
    assert parts.report["mode"] == "kept existing split" and parts.report["leaking_groups"] == 0
    assert {k: len(v) for k, v in parts.items()} == {"train": 6, "val": 2, "test": 1}
    assert parts.report["classes_missing"] == {"test": ["b"]}


def test_scan_refuses_a_folder_mixing_split_and_class_folders(tmp_path):
    make_dataset(tmp_path / "d", {"train": 1, "anime": 1})
    with pytest.raises(ArtstyleError, match="mixes split folders"):
        data.scan(tmp_path / "d", progress=False)


def test_data_dir_without_class_folders_is_a_clear_error(tmp_path):
    write_image(tmp_path / "a.png", 1)
    with pytest.raises(ArtstyleError, match="no class folders.*1 images lie directly in it"):
        data.scan(tmp_path, progress=False)
    with pytest.raises(ArtstyleError, match="no such folder"):
        data.scan(tmp_path / "missing", progress=False)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ArtstyleError, match="no images found"):
        data.scan(tmp_path, progress=False)


def test_full_shared_dataset_scan_matches_its_own_manifest(shared_data, tmp_path):
    # Smoke test on all 6,385 real images (no timing asserted: the bench measures speed).
    df = data.scan(shared_data, tmp_path / "manifest.csv", progress=False)
    assert len(df) == 6385 and df["valid"].all()
    assert data.read_classes(tmp_path) == {"anime": 0, "cartoon": 1, "human": 2}
    reference = pd.read_csv(shared_data / "manifest.csv")
    reference["path"] = reference["file"].map(lambda f: str(shared_data / f))
    merged = df.merge(reference, on="path", suffixes=("", "_ref"))
    assert len(merged) == 6385
    assert (merged["sha256"] == merged["sha256_ref"]).all()
    assert (merged["width"] == merged["width_ref"]).all() and (merged["label"] == merged["class"]).all()


# --- split ------------------------------------------------------------------------------------


def synthetic_manifest(counts: dict[str, int], seed=0, dup_groups=0, dup_size=3) -> pd.DataFrame:
    """A manifest without image files: random 64-bit phashes, plus groups of planted duplicates
    (exact copies and copies whose phash differs by 2 bits)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label_idx, (label, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            h = int(rng.integers(0, 2**63)) | (int(rng.integers(0, 2)) << 63)
            rows.append(
                {
                    "path": f"/d/{label}/{i:05d}.jpg",
                    "label": label,
                    "label_idx": label_idx,
                    "phash": f"{h:016x}",
                    "sha256": f"{label}{i:060d}",
                }
            )
    df = pd.DataFrame(rows)
    for g in range(dup_groups):
        source = df.iloc[int(rng.integers(len(df)))]
        h = int(source["phash"], 16)
        for k in range(dup_size):
            copy = source.copy()
            copy["path"] = f"{source['path']}.copy{g}_{k}.jpg"
            if k % 2:  # near duplicate: 2 bits flipped, different bytes
                copy["phash"] = f"{h ^ (0b11 << (7 * k)):016x}"
                copy["sha256"] = f"near{g}_{k}"
            df = pd.concat([df, copy.to_frame().T], ignore_index=True)
    df = df.assign(width=64, height=64, format="JPEG", mode="RGB", bytes=1000, valid=True, error="", split="", group="")
    return df[COLUMNS]


def _groups(df: pd.DataFrame) -> np.ndarray:
    return data.duplicate_groups(df)


def test_split_is_stratified_reproducible_and_never_splits_a_duplicate_group(tmp_path):
    df = synthetic_manifest({"anime": 300, "cartoon": 500, "human": 200}, dup_groups=40)
    parts = data.split(df, tmp_path / "s", val=0.15, test=0.15, seed=7)
    combined = pd.concat(parts.values(), ignore_index=True)
    assert len(combined) == len(df) and set(combined["path"]) == set(df["path"])

    # no leakage: every exact/near duplicate group sits in exactly one split
    combined["group"] = _groups(combined)
    assert combined.groupby("group")["split"].nunique().max() == 1
    assert (combined.groupby("sha256")["split"].nunique() == 1).all()

    # stratified: each class close to 70/15/15
    shares = pd.crosstab(combined["label"], combined["split"], normalize="index")
    assert np.allclose(shares["train"], 0.70, atol=0.02) and np.allclose(shares["test"], 0.15, atol=0.02)

    # reproducible for a seed, whatever the row order; different seed, different split
    again = data.split(df.sample(frac=1, random_state=3), val=0.15, test=0.15, seed=7)
    assert all(set(again[k]["path"]) == set(parts[k]["path"]) for k in parts)
    other = data.split(df, val=0.15, test=0.15, seed=8)
    assert set(other["test"]["path"]) != set(parts["test"]["path"])

    written = {k: data.read_manifest(tmp_path / "s" / f"{k}.csv") for k in ("train", "val", "test")}
    assert all(list(w.columns) == COLUMNS and len(w) == len(parts[k]) for k, w in written.items())
    assert data.read_classes(tmp_path / "s") == {"anime": 0, "cartoon": 1, "human": 2}
    assert json.loads((tmp_path / "s" / "split.json").read_text())["images_in_duplicate_groups"] > 0


def test_split_real_files_keeps_copies_together(shared_subset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(shared_subset, root, symlinks=False)
    anime = sorted((root / "anime").glob("*.jpg"))
    shutil.copy(anime[0], root / "anime" / "exact_copy.jpg")
    with Image.open(anime[1]) as im:  # re-encoded at lower quality and resized: a near duplicate
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4)).save(
            root / "anime" / "resized.jpg", quality=70
        )
    df = data.scan(root, progress=False)
    parts = data.split(df, val=0.2, test=0.2, seed=1)
    where = {Path(p).name: name for name, part in parts.items() for p in part["path"]}
    assert where["exact_copy.jpg"] == where[anime[0].name]
    assert where["resized.jpg"] == where[anime[1].name]
    assert all(set(part["label"]) == {"anime", "cartoon", "human"} for part in parts.values())


def test_split_names_the_class_that_is_too_small():
    df = synthetic_manifest({"anime": 30, "cartoon": 30, "tiny": 2})
    with pytest.raises(ArtstyleError, match="class 'tiny' is too small.*2 valid images"):
        data.split(df, val=0.15, test=0.15)
    # three distinct images are enough for one in each split
    df3 = synthetic_manifest({"anime": 30, "cartoon": 30, "tiny": 3})
    parts = data.split(df3, val=0.15, test=0.15)
    assert [int((p["label"] == "tiny").sum()) for p in parts.values()] == [1, 1, 1]
    # without a test split, two are enough
    parts = data.split(df, val=0.15, test=0.0)
    assert parts["test"].empty and int((parts["val"]["label"] == "tiny").sum()) == 1


def test_split_counts_duplicates_as_one_image_when_checking_class_size():
    df = synthetic_manifest({"anime": 30, "cartoon": 30, "solo": 1}, dup_groups=0)
    solo = df[df["label"] == "solo"].iloc[0]
    copies = pd.DataFrame([solo.to_dict() | {"path": f"/d/solo/copy{i}.jpg"} for i in range(3)])
    with pytest.raises(ArtstyleError, match="'solo'.*4 valid images \\(1 distinct"):
        data.split(pd.concat([df, copies], ignore_index=True))


def test_split_drops_invalid_rows_and_reports_them():
    df = synthetic_manifest({"a": 20, "b": 20})
    df.loc[[0, 25], ["valid", "error", "phash"]] = [False, "truncated", ""]
    parts = data.split(df)
    assert parts.report["dropped_invalid"] == 2
    assert sum(len(p) for p in parts.values()) == 38


@pytest.mark.parametrize("val,test", [(0.5, 0.5), (-0.1, 0.2), (1.0, 0.0)])
def test_split_rejects_impossible_fractions(val, test):
    with pytest.raises(ArtstyleError, match="leave room for train"):
        data.split(synthetic_manifest({"a": 10, "b": 10}), val=val, test=test)


def test_not_a_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "other.csv").write_text("file,class\na.jpg,cat\n")
    with pytest.raises(ArtstyleError, match="not an artstyle manifest"):
        data.split(tmp_path / "other.csv")


# --- show and audit ---------------------------------------------------------------------------


def test_show_draws_a_grid_from_a_manifest_or_a_folder(messy_dataset, tmp_path):
    root, _ = messy_dataset
    shown = data.show(root, tmp_path / "from_dir.png", per_class=4, seed=1)
    # bad files are skipped, not drawn; every class gets its images (cartoon has 4 good ones)
    assert shown.groupby("label").size().to_dict() == {"anime": 3, "cartoon": 4, "human": 3}
    with Image.open(tmp_path / "from_dir.png") as png:
        assert png.format == "PNG" and png.width > 500 and png.height > 400
    manifest = data.scan(root, progress=False)
    again = data.show(manifest, tmp_path / "from_manifest.png", per_class=2, seed=1)
    assert len(again) == 6 and again["path"].isin(manifest.loc[manifest["valid"], "path"]).all()


def test_audit_finds_planted_problems_and_a_size_shortcut(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, {"anime": 25}, size=(64, 64), seed=1)  # every anime image is small...
    make_dataset(root, {"human": 25}, size=(200, 150), seed=2)  # ...every photo large: a shortcut
    shutil.copy(root / "anime" / "anime_000.png", root / "anime" / "copy.png")  # exact, within class
    with Image.open(root / "human" / "human_001.png") as im:  # label error: a photo filed as anime
        im.resize((100, 75)).save(root / "anime" / "mislabelled.jpg", quality=90)
    write_image(root / "human" / "tiny.png", 5, size=(12, 10))
    (root / "human" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")

    summary = data.audit(root, tmp_path / "audit", progress=False)
    out = tmp_path / "audit"
    for name in (
        "audit.md",
        "audit.json",
        "class_balance.png",
        "image_sizes.png",
        "shortcut.png",
        "duplicates.csv",
        "tiny.csv",
        "manifest.csv",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert summary["invalid"] == 1 and summary["invalid_files"][0]["path"].endswith("broken.jpg")
    assert summary["duplicate_pairs"]["exact within class"] == 1
    assert summary["duplicate_pairs"]["near across classes"] >= 1
    assert summary["tiny_images"] == 1

    shortcut = summary["shortcut"]
    assert shortcut["majority_baseline"] == pytest.approx(27 / 53, abs=0.01)
    assert shortcut["metadata_accuracy"] > 0.9  # size alone gives the class away
    assert shortcut["single_feature_accuracy"]["width"] > 0.9
    assert shortcut["single_feature_accuracy"]["format"] < 0.7

    report = (out / "audit.md").read_text()
    assert "Warning: metadata alone predicts the class" in report and "mislabelled.jpg" in report
    assert "broken.jpg" in report and json.loads((out / "audit.json").read_text())["tiny_images"] == 1


def test_top_level_import_stays_free_of_pandas_and_torch():
    code = "import sys, artstyle; bad = {'pandas', 'torch', 'sklearn', 'matplotlib'} & set(sys.modules); print(bad)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "set()"
