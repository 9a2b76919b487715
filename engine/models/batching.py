"""Length-grouped batches with dynamic padding, for training and inference.

Random batches of short utterances are mostly padding (CLINC150: 44.7% at batch 32); sorting by
length inside shuffled mega-batches cuts that to ~0.3% while keeping the batch order random
enough for SGD. Inference sorts globally (order does not matter there) and callers put the
results back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MEGA_BATCH_FACTOR = 50


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, mega_factor: int = MEGA_BATCH_FACTOR
) -> list[list[int]]:
    """Index batches for one training epoch.

    Shuffle (seeded by seed and epoch), cut into mega-batches of `mega_factor * batch_size`, sort
    each by length, cut into batches, then shuffle the batch order. The longest batch goes first
    so an out-of-memory error shows up at step 1, not hours in.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    n = len(lengths)
    if n == 0:
        return []
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    lens = np.asarray(lengths)
    mega = max(batch_size, batch_size * mega_factor)
    batches: list[list[int]] = []
    for lo in range(0, n, mega):
        chunk = order[lo:lo + mega]
        chunk = chunk[np.argsort(-lens[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    batches = [batches[i] for i in rng.permutation(len(batches))]
    longest = max(range(len(batches)), key=lambda i: (int(lens[batches[i]].max()), len(batches[i])))
    batches.insert(0, batches.pop(longest))
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches for inference: longest first, globally sorted, so padding is minimal."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").tolist()
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of token slots that are padding when each batch is padded to its own longest row."""
    used = sum(lengths[i] for batch in batches for i in batch)
    slots = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
    return 1.0 - used / slots if slots else 0.0


def pad_batch(
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    labels: Sequence[int] | Sequence[Sequence[int]] | None = None,
    label_pad: int = -100,
) -> dict[str, Any]:
    """Tensors `input_ids`, `attention_mask` (and `labels`) padded on the right to the batch max.

    `labels` is one int per row (sequence classification) or one per token (token classification,
    padded with `label_pad`, which the loss ignores).
    """
    import torch

    width = max((len(s) for s in sequences), default=0)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
    batch: dict[str, Any] = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if labels is not None:
        if labels and isinstance(labels[0], Sequence):
            lab = np.full((len(sequences), width), label_pad, dtype=np.int64)
            for row, seq_labels in enumerate(labels):
                lab[row, :len(seq_labels)] = seq_labels
            batch["labels"] = torch.from_numpy(lab)
        else:
            batch["labels"] = torch.tensor(list(labels), dtype=torch.long)
    return batch
