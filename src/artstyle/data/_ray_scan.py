"""``data.scan(..., engine="ray")``: the local scan's per-file function in Ray tasks on the
connected cluster (``pip install 'artstyle[ray]'``). Imported only on that path."""

from __future__ import annotations

import pyarrow as pa
import ray
from tqdm import tqdm

from ..images import driver_pillow_limit, use_pillow_limit
from .measure import inspect_file


def inspect_files(paths: list[str], max_pixels: int | None, progress: bool = False,
                  cpus_per_task: float = 1.0) -> list[dict]:
    """The local scan's ``inspect_file`` on every path, in Ray tasks; rows in ``paths`` order."""
    ds = ray.data.from_items([{"index": i, "path": p} for i, p in enumerate(paths)])
    measured = ds.map_batches(inspect_batch, batch_format="pyarrow", num_cpus=cpus_per_task,
                              fn_kwargs={"max_pixels": max_pixels, "pillow_limit": driver_pillow_limit()})
    rows: list[dict | None] = [None] * len(paths)
    with tqdm(total=len(paths), unit="img", desc="scan (ray)", disable=not progress) as bar:
        for batch in measured.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in batch.to_pylist():
                rows[row.pop("index")] = row
            bar.update(batch.num_rows)
    return rows  # type: ignore[return-value]


def inspect_batch(batch: pa.Table, *, max_pixels: int | None, pillow_limit: int | None) -> pa.Table:
    use_pillow_limit(pillow_limit)
    rows = []
    for index, path in zip(batch.column("index").to_pylist(), batch.column("path").to_pylist()):
        rows.append({"index": index, **inspect_file(path, max_pixels=max_pixels)})
    return pa.Table.from_pylist(rows)
