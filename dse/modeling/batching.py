"""Tokenize GLUE rows once and cut them into length-sorted, dynamically padded batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

__all__ = ["Batch", "EncodedSet", "encode_dataset", "iter_batches"]


@dataclass(frozen=True)
class EncodedSet:
    """Token ids of every row (unpadded) and the labels, in dataset order."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        """Token count of every row, [CLS]/[SEP] included."""
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self))

    def subset(self, rows: np.ndarray) -> "EncodedSet":
        return EncodedSet(
            [self.input_ids[i] for i in rows], [self.token_type_ids[i] for i in rows], self.labels[rows]
        )


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray  # positions in the EncodedSet
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        """The same batch with its tensors on ``device`` (itself when they are there already)."""
        if self.input_ids.device == device:
            return self
        return Batch(self.rows, *(t.to(device, non_blocking=True) for t in
                                  (self.input_ids, self.attention_mask, self.token_type_ids, self.labels)))


def encode_dataset(ds: Dataset, tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> EncodedSet:
    table = ds.data
    if table.num_rows != len(ds):  # select()/filter() keep the whole table behind an index mapping
        raise ValueError(f"encode_dataset reads the Arrow table: {len(ds)} rows selected from {table.num_rows}; "
                         "build a new table (ds.data.table.take(rows)) instead")
    text_a = table.column("text_a").to_pylist()
    text_b = table.column("text_b").to_pylist()
    pairs = any(text_b)
    enc = tokenizer(
        text_a, text_b if pairs else None, truncation=True, max_length=max_length, padding=False
    )
    token_types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return EncodedSet(enc["input_ids"], token_types, np.asarray(table.column("label").to_numpy()))


def _collate(enc: EncodedSet, rows: np.ndarray, pad_id: int) -> Batch:
    width = max(len(enc.input_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        n = len(enc.input_ids[i])
        ids[r, :n] = torch.tensor(enc.input_ids[i])
        types[r, :n] = torch.tensor(enc.token_type_ids[i])
        mask[r, :n] = 1
    return Batch(rows, ids, mask, types, torch.as_tensor(enc.labels[rows]))


def iter_batches(
    enc: EncodedSet,
    *,
    batch_size: int,
    pad_id: int = 0,
    shuffle_seed: int | None = None,
    bucket_batches: int = 20,
) -> Iterator[Batch]:
    """Batches of similar length so little compute goes to padding.

    Without a seed: all rows sorted by length (evaluation). With a seed: rows shuffled, sorted
    within buckets of ``bucket_batches`` batches, and the batches shuffled (training).
    """
    lengths = enc.lengths
    if shuffle_seed is None:
        order = np.argsort(lengths, kind="stable")
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    else:
        rng = np.random.default_rng(shuffle_seed)
        order = rng.permutation(len(enc))
        chunk = batch_size * bucket_batches
        batches = []
        for start in range(0, len(order), chunk):
            bucket = order[start : start + chunk]
            bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
            batches += [bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size)]
        rng.shuffle(batches)
    for rows in batches:
        yield _collate(enc, rows, pad_id)
