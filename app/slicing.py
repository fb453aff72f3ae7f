"""Slices: which samples of a batch belong to which slice value.

An update of a sliced session may name one slice for the whole batch (`"slice": v`) or one
per sample along the first axis (`"slices": [v, ...]`). A value is a string of 1 to
MAX_SLICE_CHARS characters without control characters, or an integer, which names the same
slice as its decimal string (so `3` and `"3"` are one slice, in JSON and in `.npz` alike).

Per-sample values become their distinct values and one integer code per sample (a dict pass
over a JSON list, one `np.unique` over an `.npz` array; each distinct value checked once), the
samples are grouped by one stable sort of the codes, and each group's rows are taken from every
input: the slice's contribution is then the metric's own `update_state` on exactly its
samples, as Keras would compute it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidInput

MAX_SLICE_CHARS = 128
#: Bytes an `.npz` `slices` string array may decompress to (numpy keeps 4 bytes per character
#: of its longest value): a million values of 16 characters. Integer codes cost 8 bytes each.
MAX_SLICE_TEXT_BYTES = 64 * 1024 * 1024
EXPECTED = (f"a string of 1-{MAX_SLICE_CHARS} characters without control characters, or an "
            "integer")


@dataclass(frozen=True)
class Slicing:
    """A batch's slice values: `whole` for the whole batch, else per sample as the distinct
    `values` (in order of first appearance) and each sample's index into them (`codes`).

    Codes, not an array of strings: a JSON list of a million one-letter values with one long
    value among them would otherwise become a million-row array as wide as the longest."""

    whole: str | None = None
    values: tuple[str, ...] = ()
    codes: np.ndarray | None = None

    @property
    def samples(self) -> int:
        return 0 if self.codes is None else int(self.codes.size)

    def fingerprint_arrays(self) -> dict[str, np.ndarray]:
        """What an Idempotency-Key's fingerprint includes of the slicing (the same for a JSON
        and an `.npz` encoding of the same values)."""
        if self.whole is not None:
            return {"slice": np.array(self.whole)}
        assert self.codes is not None
        return {"slices": self.codes.astype(np.int64),
                "slices-values": np.array("\n".join(self.values))}

    def groups(self) -> list[tuple[str, np.ndarray]]:
        """Each distinct value with the positions of its samples, in order of first
        appearance (one stable sort, not a scan per value)."""
        assert self.codes is not None
        counts = np.bincount(self.codes, minlength=len(self.values))
        ends = np.cumsum(counts)
        by_value = np.argsort(self.codes, kind="stable")
        return [(value, by_value[end - count:end])
                for value, count, end in zip(self.values, counts.tolist(), ends.tolist(),
                                             strict=True)]


def _checked(text: str, what: str) -> str:
    if not 1 <= len(text) <= MAX_SLICE_CHARS or not text.isprintable():
        raise InvalidInput(f"{what} must be {EXPECTED}; got {text!r:.100}")
    return text


def one_value(value: Any, what: str = "'slice'") -> str:
    """A slice value from JSON (str or int) or a 0-d `.npz` array, as its string."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuU":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"{what} must be {EXPECTED}; got {value!r:.100}")
    return _checked(str(value), what)


def per_sample(value: Any) -> Slicing:
    """`slices`: a JSON list of strings and integers, or a 1-d `.npz` array of integers or
    text; each distinct value is checked once."""
    what = "'slices'"
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "iuU":
            raise InvalidInput(f"{what} in an .npz archive must be a 1-d array of integers or "
                               f"text (numpy dtype kind i, u or U); got shape "
                               f"{list(value.shape)}, dtype {value.dtype}")
        distinct, first, inverse = np.unique(value, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # distinct values by first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        texts = [str(v) for v in distinct[order].tolist()]
        codes = rank[inverse.ravel()]
    elif isinstance(value, list):
        kinds = set(map(type, value))
        if kinds - {str, int}:
            odd = sorted(k.__name__ for k in kinds - {str, int})
            raise InvalidInput(f"{what} must hold values that are each {EXPECTED}; got values "
                               f"of type {', '.join(odd)}")
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(v if type(v) is str else str(v), len(index))
                             for v in value), dtype=np.int64, count=len(value))
        texts = list(index)
    else:
        raise InvalidInput(f"{what} must be a list with one value per sample, each "
                           f"{EXPECTED}; got {type(value).__name__}")
    for text in texts:
        _checked(text, f"each value of {what}")
    # Integers and their decimal strings are one slice: merge codes that now name one text.
    merged = list(dict.fromkeys(texts))
    if len(merged) < len(texts):
        position = {text: i for i, text in enumerate(merged)}
        codes = np.array([position[t] for t in texts], np.int64)[codes]
        texts = merged
    return Slicing(values=tuple(texts), codes=np.asarray(codes, np.int64))


def from_fields(fields: dict[str, Any]) -> Slicing | None:
    """The slicing an update's body asks for (`slice` or `slices`, not both), or None."""
    whole, samples = fields.pop("slice", None), fields.pop("slices", None)
    if whole is not None and samples is not None:
        raise InvalidInput("an update gives 'slice' (one value for the whole batch) or "
                           "'slices' (one per sample), not both")
    if whole is not None:
        return Slicing(whole=one_value(whole))
    if samples is not None:
        return per_sample(samples)
    return None


def rows(inputs: dict[str, np.ndarray], sample_weight: np.ndarray | None,
         index: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The samples `index` of every input (and of a per-sample weight)."""
    taken = {name: array[index] for name, array in inputs.items()}
    weight = sample_weight
    if sample_weight is not None and sample_weight.ndim:
        weight = sample_weight[index]
    return taken, weight


def check_aligned(inputs: dict[str, np.ndarray], sample_weight: np.ndarray | None,
                  samples: int) -> None:
    """Every input, and a sample weight that is not a scalar, must have `samples` rows: the
    slices name the samples along the first axis."""
    arrays: Sequence[tuple[str, np.ndarray]] = list(inputs.items())
    if sample_weight is not None and sample_weight.ndim:
        arrays = [*arrays, ("sample_weight", sample_weight)]
    for name, array in arrays:
        if array.ndim == 0 or array.shape[0] != samples:
            raise InvalidInput(f"'slices' has {samples} values, one per sample; {name!r} must "
                               f"then have {samples} samples along its first axis; got shape "
                               f"{list(array.shape)}")
