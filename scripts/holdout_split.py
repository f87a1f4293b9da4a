"""Build a leave-sources-out split of artstyle-v1: whole sources are held out for testing, so the
test set measures generalisation to unseen sources (the private test set's situation), not to
unseen images of seen sources.

    python scripts/holdout_split.py ../shared/data/artstyle-v1 -o runs/holdout-split
    artstyle train runs/holdout-split -o runs/holdout-lite0 ...

Train and val come from the remaining sources (artstyle's own leak-free split); test is every image
of the held-out sources.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from artstyle.data import scan, split

# One source per class, chosen to differ in kind from what stays in training:
# anime frames from selfie2anime, Simpsons art, everyday masked-face photos.
HELD_OUT = {
    "anime": "SashaDance/selfie2anime",
    "cartoon": "gprzy/simpsons-classification",
    "human": "chandrikadeb7/Face-Mask-Detection",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    sources = pd.read_csv(args.data / "manifest.csv")[["file", "class", "source_repo_or_package"]]
    manifest = scan(args.data, progress=False)
    manifest["file"] = manifest["path"].map(lambda p: str(Path(p).relative_to(args.data.resolve())))
    manifest = manifest.merge(sources, on="file", how="left")
    held = manifest.apply(lambda r: HELD_OUT.get(r["label"]) == r["source_repo_or_package"], axis=1)

    parts = split(manifest[~held].drop(columns=["file", "class", "source_repo_or_package"]), None,
                  val=0.15, test=0.0001, seed=42)
    args.output.mkdir(parents=True, exist_ok=True)
    parts["train"].to_csv(args.output / "train.csv", index=False)
    parts["val"].to_csv(args.output / "val.csv", index=False)
    test = manifest[held & manifest["valid"]].drop(columns=["file", "class", "source_repo_or_package"])
    test.to_csv(args.output / "test.csv", index=False)
    for name, frame in (("train", parts["train"]), ("val", parts["val"]), ("test", test)):
        print(name, len(frame), frame["label"].value_counts().to_dict())


if __name__ == "__main__":
    main()
