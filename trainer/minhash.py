"""Near-duplicate detection with MinHash and LSH banding, in numpy.

    from trainer.minhash import near_duplicates

    duplicates = near_duplicates(texts, threshold=0.85, num_perm=128)
    # {index of a later copy: (index of the first one, estimated Jaccard similarity)}

Texts are compared as sets of shingles: word 5-grams, where words are the runs of
letters, digits and underscores of the lowercased text (BigCode's choice for The Stack:
punctuation and layout changes do not hide a copy). A text of fewer than 5 words is one
shingle. MinHash estimates the Jaccard similarity of two shingle sets as the fraction of
equal signature values; LSH banding finds the pairs worth comparing without comparing all
pairs, and every candidate pair is then checked against the threshold on the full signature.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

SHINGLE_WORDS = 5
WORD = re.compile(r"[a-z0-9_]+")
MAX_HASH = np.uint32(0xFFFFFFFF)
BLOCK_SHINGLES = 16384
"""Shingles hashed at once: 16 MB of uint64 with 128 permutations, whatever the rows."""

# Fixed odd 64-bit multipliers that mix the word hashes of a shingle into one value.
_MIX = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
    ],
    dtype=np.uint64,
)


def shingle_hashes(text: str, n: int = SHINGLE_WORDS) -> np.ndarray:
    """32-bit hashes of the text's word n-grams (one hash for a text shorter than n words)."""
    words = WORD.findall(text.lower())
    if not words:
        return np.zeros(0, dtype=np.uint64)
    # crc32 is deterministic across runs, unlike Python's salted hash().
    word_hashes = np.array([zlib.crc32(word.encode()) for word in words], dtype=np.uint64)
    k = min(n, len(words))
    count = len(words) - k + 1
    mixed = np.zeros(count, dtype=np.uint64)
    for j in range(k):
        mixed += word_hashes[j : j + count] * _MIX[j]  # wraps modulo 2**64 on purpose
    return mixed >> np.uint64(32)


def _permute(shingles: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, num_perm): each shingle hash under each permutation (multiply-shift, see below)."""
    return (shingles[:, None] * a[None, :] + b[None, :]) >> np.uint64(32)


def minhash_signatures(texts: list[str], num_perm: int = 128, seed: int = 0) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures; a text with no words gets all MAX_HASH.

    Permutation i is the multiply-shift hash ((a_i * x + b_i) mod 2**64) >> 32 of a shingle
    hash x, with random odd a_i: a cheap universal family that numpy computes in uint64.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    signatures = np.full((len(texts), num_perm), MAX_HASH, dtype=np.uint32)
    shingles = [shingle_hashes(text) for text in texts]
    # Whole texts at a time, about BLOCK_SHINGLES per block (16 MB of uint64 with 128 perms);
    # a text longer than that goes alone, a slice at a time, so memory stays bounded per row.
    start = 0
    while start < len(texts):
        stop, size = start, 0
        while stop < len(texts) and (stop == start or size + len(shingles[stop]) <= BLOCK_SHINGLES):
            size += len(shingles[stop])
            stop += 1
        if size > BLOCK_SHINGLES and stop == start + 1:
            row = shingles[start]
            signature = np.full(num_perm, MAX_HASH, dtype=np.uint64)
            for offset in range(0, len(row), BLOCK_SHINGLES):
                hashed = _permute(row[offset : offset + BLOCK_SHINGLES], a, b)  # (n, num_perm)
                signature = np.minimum(signature, hashed.min(axis=0))
            signatures[start] = signature.astype(np.uint32)
        else:
            nonempty = [i for i in range(start, stop) if len(shingles[i])]
            if nonempty:
                hashed = _permute(np.concatenate([shingles[i] for i in nonempty]), a, b)
                offsets = np.cumsum([0] + [len(shingles[i]) for i in nonempty[:-1]])
                reduced = np.minimum.reduceat(hashed, offsets, axis=0)  # (texts, num_perm)
                signatures[nonempty] = reduced.astype(np.uint32)
        start = stop
    return signatures


def lsh_bands(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows per band) so that a pair at the threshold becomes a candidate with
    probability at least `recall`.

    A pair of similarity s shares at least one band with probability 1 - (1 - s**r)**b.
    Candidates are verified on the full signature, so a false candidate costs only time
    while a missed one keeps a duplicate: take the most rows per band (fewest candidates)
    that still reaches the recall. For 0.85 and 128 permutations: 16 bands of 8 rows, which
    makes 99.4% of pairs at 0.85 candidates, 95% at 0.8 and 6% at 0.5.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"near-dedup threshold is {threshold}; use 0 < threshold <= 1")
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def near_duplicates(
    texts: list[str], threshold: float = 0.85, num_perm: int = 128
) -> dict[int, tuple[int, float]]:
    """Later near-copies: {index: (index of the earlier text kept, estimated similarity)}.

    Texts are taken in order; each is compared with the texts kept so far, so the first of
    a group of near-duplicates stays. A text with no words is never a duplicate here.
    """
    signatures = minhash_signatures(texts, num_perm)
    bands, rows = lsh_bands(threshold, num_perm)
    # One 64-bit key per band: a random linear mix of its rows (collisions are verified away).
    coefficients = np.random.default_rng(1).integers(1, 2**63, size=rows, dtype=np.uint64)
    wide = signatures.astype(np.uint64)
    keys = np.stack(
        [(wide[:, k * rows : (k + 1) * rows] * coefficients).sum(axis=1) for k in range(bands)],
        axis=1,
    ).tolist()
    empty = (signatures == MAX_HASH).all(axis=1).tolist()
    buckets: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    duplicates: dict[int, tuple[int, float]] = {}
    for i in range(len(texts)):
        if empty[i]:
            continue
        candidates = set()
        for band, key in enumerate(keys[i]):
            candidates.update(buckets[band].get(key, ()))
        if candidates:
            ordered = np.array(sorted(candidates))
            similarity = (signatures[ordered] == signatures[i]).mean(axis=1)
            hits = np.flatnonzero(similarity >= threshold)
            if len(hits):
                duplicates[i] = (int(ordered[hits[0]]), float(similarity[hits[0]]))
                continue
        for band, key in enumerate(keys[i]):
            buckets[band].setdefault(key, []).append(i)
    return duplicates
