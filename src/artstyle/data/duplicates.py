"""Exact duplicates (same sha256) and near duplicates (perceptual hashes a few bits apart)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..config import DEFAULT_PHASH_THRESHOLD  # noqa: F401 - re-exported


# Rows compared per block: bounds memory to block x n x 8 bytes (~32 MB).
_PAIR_BLOCK_ELEMENTS = 4_000_000


def phash_to_uint64(phashes: pd.Series) -> np.ndarray:
    """imagehash hex strings -> uint64 (64-bit phash); empty (invalid image) -> 0, masked by callers."""
    return np.array([int(h, 16) if h else 0 for h in phashes], dtype=np.uint64)


def near_duplicate_pairs(df: pd.DataFrame, threshold: int = DEFAULT_PHASH_THRESHOLD) -> pd.DataFrame:
    """Pairs of rows whose phashes are at most ``threshold`` bits apart (exact copies included).

    Returns a DataFrame of positional row numbers ``i < j`` and their ``distance``. Rows without a
    phash (invalid images) never pair. Exhaustive comparison with a vectorised popcount: 6,000
    images take well under a second; quadratic, so ~100,000 images take a minute or so.
    """
    has_hash = (df["phash"] != "").to_numpy()
    rows = np.flatnonzero(has_hash)
    hashes = phash_to_uint64(df["phash"].iloc[rows])
    n = len(hashes)
    found_i, found_j, found_d = [], [], []
    block = max(1, _PAIR_BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n, block):
        stop = min(n, start + block)
        # Compare this block only with later rows so each pair is found once.
        dist = np.bitwise_count(hashes[start:stop, None] ^ hashes[None, start:])
        i, j = np.nonzero(dist <= threshold)
        keep = j > i  # j indexes hashes[start:], so j > i means "a later row than i itself"
        found_i.append(i[keep] + start)
        found_j.append(j[keep] + start)
        found_d.append(dist[i[keep], j[keep]])
    i = np.concatenate(found_i) if found_i else np.empty(0, dtype=np.int64)
    j = np.concatenate(found_j) if found_j else np.empty(0, dtype=np.int64)
    d = np.concatenate(found_d) if found_d else np.empty(0, dtype=np.uint8)
    return pd.DataFrame({"i": rows[i], "j": rows[j], "distance": d.astype("int64")})


def exact_duplicate_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Pairs of rows with identical bytes (sha256), each duplicate paired with the first copy."""
    sha = df["sha256"].to_numpy()
    has_sha = sha != ""
    position = pd.Series(np.arange(len(df)))[has_sha]
    first = position.groupby(sha[has_sha]).transform("min")
    dup = first != position
    return pd.DataFrame(
        {"i": first[dup].to_numpy(dtype="int64"), "j": position[dup].to_numpy(dtype="int64"), "distance": 0}
    )


def duplicate_groups(df: pd.DataFrame, threshold: int = DEFAULT_PHASH_THRESHOLD) -> np.ndarray:
    """A group id per row: rows linked by identical bytes or near-identical phashes, directly or
    through a chain (union-find over the pairs), share a group. Singletons get their own id."""
    pairs = pd.concat([exact_duplicate_pairs(df), near_duplicate_pairs(df, threshold)], ignore_index=True)
    n = len(df)
    graph = coo_matrix((np.ones(len(pairs)), (pairs["i"].to_numpy(), pairs["j"].to_numpy())), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels
