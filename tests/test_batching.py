import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.models.batching import length_grouped_batches, pad_batch, padding_fraction, sorted_batches


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 33) for _ in range(n)]


@given(st.lists(st.integers(1, 200), min_size=1, max_size=400), st.integers(1, 40), st.integers(0, 5))
@settings(max_examples=60, deadline=None)
def test_every_index_once_and_batches_bounded(lengths, batch_size, epoch):
    batches = length_grouped_batches(lengths, batch_size, seed=3, epoch=epoch, mega_factor=4)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    inference = sorted_batches(lengths, batch_size)
    assert sorted(i for b in inference for i in b) == list(range(len(lengths)))


def test_grouping_removes_most_padding():
    lengths = _lengths(3000)
    grouped = length_grouped_batches(lengths, 32, seed=0, epoch=0)
    rng = random.Random(0)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    random_batches = [order[i:i + 32] for i in range(0, len(order), 32)]
    assert padding_fraction(random_batches, lengths) > 0.3
    assert padding_fraction(grouped, lengths) < 0.02
    assert padding_fraction(sorted_batches(lengths, 32), lengths) < 0.01


def test_seeded_order_repeats_and_changes_per_epoch():
    lengths = _lengths(500)
    a = length_grouped_batches(lengths, 16, seed=1, epoch=0)
    assert a == length_grouped_batches(lengths, 16, seed=1, epoch=0)
    assert a != length_grouped_batches(lengths, 16, seed=1, epoch=1)
    assert a != length_grouped_batches(lengths, 16, seed=2, epoch=0)


def test_longest_batch_first_so_oom_shows_early():
    lengths = _lengths(800)
    batches = length_grouped_batches(lengths, 16, seed=5, epoch=2)
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    inference = sorted_batches(lengths, 16)
    assert lengths[inference[0][0]] == max(lengths)


def test_pad_batch_pads_to_batch_max_with_mask_and_labels():
    batch = pad_batch([[5, 6, 7], [8]], pad_id=0, labels=[[1, 2, -100], [3]])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[1, 2, -100], [3, -100, -100]]
    assert batch["input_ids"].dtype == torch.long
    seq = pad_batch([[1, 2], [3, 4, 5]], pad_id=9, labels=[4, 2])
    assert seq["labels"].tolist() == [4, 2]
    assert seq["input_ids"].shape == (2, 3)


def test_bad_batch_size_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        length_grouped_batches([1, 2], 0, seed=0, epoch=0)
    assert length_grouped_batches([], 4, seed=0, epoch=0) == []
