"""Streaming result writers for ``artstyle predict``: a readable table, CSV, JSON Lines and JSON.

Every row is flushed as soon as it is written, so an interrupted run keeps what it did. CSV,
JSONL and JSON carry one row per input, failures included (``error`` set, probabilities empty);
the table shows successes only, since failures are reported on stderr, one line each. A run that
may meet videos (``video=True``) adds ``frames``, ``duration_s`` and ``share_<class>`` to every
row, empty for images.
"""

from __future__ import annotations

import csv
import json
from typing import TextIO

from .predictor import Prediction

FORMATS = ("table", "csv", "jsonl", "json")
# Beyond this many classes the table shows the top-k instead of one column per class.
TABLE_MAX_PROB_COLUMNS = 6


def row_for(pred: Prediction, classes: list[str], top_k: int = 1, video: bool = False) -> dict:
    """The flat record of one prediction: path, label, confidence, p_<class>..., [top_k],
    [frames, duration_s, share_<class>... with ``video``], error."""
    row = {"path": pred.source, "label": pred.label,
           "confidence": round(pred.confidence, 6) if pred.ok else None}
    for c in classes:
        row[f"p_{c}"] = round(pred.probs[c], 6) if pred.ok else None
    if top_k > 1:
        row["top_k"] = [{"label": c, "probability": round(p, 6)} for c, p in pred.top(top_k)]
    if video:
        row.update(video_columns(pred, classes))
    row["error"] = pred.error or ""
    return row


def video_columns(pred: Prediction, classes: list[str]) -> dict:
    """A video's frames used, duration and each class's share of frames; None for an image."""
    shares = getattr(pred, "shares", None) or {}
    columns = {"frames": getattr(pred, "frames", None) or None, "duration_s": getattr(pred, "duration_s", None)}
    return columns | {f"share_{c}": shares.get(c) for c in classes}


class Writer:
    def __init__(self, stream: TextIO, classes: list[str], top_k: int = 1, video: bool = False):
        self.stream, self.classes, self.top_k, self.video = stream, classes, top_k, video

    def row(self, pred: Prediction) -> dict:
        return row_for(pred, self.classes, self.top_k, self.video)

    def write(self, pred: Prediction) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class CsvWriter(Writer):
    def __init__(self, stream, classes, top_k=1, video=False):
        super().__init__(stream, classes, top_k, video)
        fields = list(row_for(Prediction("", error="x"), classes, top_k, video))
        self.csv = csv.DictWriter(stream, fieldnames=fields, lineterminator="\n")
        self.csv.writeheader()

    def write(self, pred):
        row = self.row(pred)
        if "top_k" in row:
            row["top_k"] = " ".join(f"{t['label']}={t['probability']:.4f}" for t in row["top_k"])
        self.write_rows([row])

    def write_rows(self, rows: list[dict]) -> None:
        """Rows already in ``row_for`` form (what the Ray engine's workers send back, a batch
        at a time), flushed together."""
        self.csv.writerows(rows)
        self.stream.flush()


class JsonlWriter(Writer):
    def write(self, pred):
        self.stream.write(json.dumps(self.row(pred)) + "\n")
        self.stream.flush()


class JsonWriter(Writer):
    """A JSON array written element by element; ``close`` (also on interrupt) ends it, so the
    file is valid JSON holding every finished row."""

    def __init__(self, stream, classes, top_k=1, video=False):
        super().__init__(stream, classes, top_k, video)
        self.count = 0
        stream.write("[")

    def write(self, pred):
        self.stream.write(("," if self.count else "") + "\n  " + json.dumps(self.row(pred)))
        self.stream.flush()
        self.count += 1

    def close(self):
        self.stream.write("\n]\n" if self.count else "]\n")
        super().close()


class TableWriter(Writer):
    """Fixed-width columns with the path last, so rows can be printed as they come without
    knowing every path's length in advance."""

    def __init__(self, stream, classes, top_k=1, video=False):
        super().__init__(stream, classes, top_k, video)
        self.label_width = max(5, *(len(c) for c in classes))
        self.show_probs = len(classes) <= TABLE_MAX_PROB_COLUMNS
        self.prob_widths = [max(7, len(c) + 2) for c in classes]
        header = f"{'label':<{self.label_width}}  {'conf':>6}"
        if self.show_probs:
            header += "".join(f"  {'p_' + c:>{w}}" for c, w in zip(classes, self.prob_widths))
        if top_k > 1 or not self.show_probs:
            header += f"  {'top ' + str(top_k):<{14 * top_k}}"
        if video:
            header += f"  {'frames':>6}  {'dur_s':>8}"
        stream.write(header + "  path\n")

    def write(self, pred):
        if not pred.ok:
            return
        line = f"{pred.label:<{self.label_width}}  {pred.confidence:>6.1%}"
        if self.show_probs:
            line += "".join(f"  {pred.probs[c]:>{w}.4f}" for c, w in zip(self.classes, self.prob_widths))
        if self.top_k > 1 or not self.show_probs:
            line += "  " + f"{' '.join(f'{c}={p:.3f}' for c, p in pred.top(self.top_k)):<{14 * self.top_k}}"
        if self.video:
            frames, duration = getattr(pred, "frames", 0), getattr(pred, "duration_s", None)
            line += f"  {frames or '':>6}  {'' if duration is None else f'{duration:.1f}':>8}"
        self.stream.write(f"{line}  {pred.source}\n")
        self.stream.flush()


WRITERS = {"table": TableWriter, "csv": CsvWriter, "jsonl": JsonlWriter, "json": JsonWriter}


def open_writer(fmt: str, stream: TextIO, classes: list[str], top_k: int = 1, video: bool = False) -> Writer:
    return WRITERS[fmt](stream, classes, top_k, video)


class FrameWriter:
    """``--per-frame``: JSON Lines, one record per sampled video frame (path, frame index,
    time_s, label, confidence, p_<class>); images and failures add nothing."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, pred: Prediction) -> None:
        self.write_records(frame_records(pred))

    def write_records(self, records: list[dict]) -> None:
        """Records already in ``frame_records`` form (what the Ray engine's actors send back)."""
        for record in records:
            self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()


def frame_records(pred: Prediction) -> list[dict]:
    """``--per-frame``'s records of a video's sampled frames (none for an image or a failure)."""
    return [{"path": pred.source, "frame": frame.index, "time_s": frame.time_s, "label": frame.label,
             "confidence": round(frame.confidence, 6), **{f"p_{c}": round(p, 6) for c, p in frame.probs.items()}}
            for frame in getattr(pred, "per_frame", ())]
