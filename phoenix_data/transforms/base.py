"""What every transform shares: the item's masks, re-zeroing of points without a value, Compose, randomness.

An item (``PhoenixLandmarks[i]``) holds ``landmarks`` (Tensor[T, N, 3]), ``confidence`` (Tensor[T, N]) and
``valid`` (bool Tensor[T, N]: the point was found by MediaPipe). Transforms may add:

- ``imputed`` (bool Tensor[T, N]): the value was made up by a transform (FillGaps). ``valid`` and
  ``imputed`` never overlap; a point *has a value* where ``valid | imputed``.
- ``point_ids`` (LongTensor[N]): which point of the extraction layout (543 or 553 points) each column is;
  absent means ``arange(N)``. ``layout_points``: that layout's size.
- ``coords``: ``"image"`` (absent: x, y normalised to image width and height) or ``"shoulders"``
  (after Normalize: origin at the shoulder midpoint, unit the shoulder width); ``isotropic``: True when
  x and y have the same unit in pixels (Normalize with ``image_size``).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import torch

from ..record import part_slices

log = logging.getLogger(__name__)



class Item(TypedDict, total=False):
    """A dataset item as transforms see it (the keys above, and ``PhoenixLandmarks``'s own)."""

    landmarks: torch.Tensor
    confidence: torch.Tensor
    valid: torch.Tensor
    imputed: torch.Tensor
    point_ids: torch.Tensor
    layout_points: int
    coords: str
    isotropic: bool
    mirrored: bool
    glosses: torch.Tensor
    gloss_text: str
    id: str
    signer: str
    num_frames: int
    translation: str

XYZ = 3


def validity(landmarks: torch.Tensor, confidence: Optional[torch.Tensor] = None) -> torch.Tensor:
    """bool Tensor[T, N]: which points MediaPipe found, in the extraction layout (N = 543 or 553).

    Per part and frame. The pose counts as found in a frame where any of its coordinates is non-zero
    (MediaPipe returns all 33 points or none; a pose not found is stored as zeros), whatever the
    per-point visibility: MediaPipe still estimates off-screen or occluded points, and their visibility
    stays in ``confidence`` for whoever wants a threshold. Face and hands: their presence, i.e.
    ``confidence == 1`` (given ``confidence`` (Tensor[T, N])), or else any non-zero coordinate.
    """
    frames, points = landmarks.shape[0], landmarks.shape[1]
    found = []
    for part, s in part_slices(points).items():
        if part == "pose" or confidence is None:
            part_found = landmarks[:, s].reshape(frames, -1).ne(0).any(dim=1)
        else:
            part_found = confidence[:, s.start].gt(0.5)  # presence: the same 1 or 0 on every point of the part
        found.append(part_found[:, None].expand(frames, s.stop - s.start))
    return torch.cat(found, dim=1)


def ensure_masks(item: Item) -> Item:
    """Give an item ``valid`` (from its landmarks) and ``imputed`` (all False) if it has none yet."""
    if "valid" not in item:
        if "point_ids" in item:
            raise ValueError("an item with point_ids but no 'valid' mask: validity can only be computed "
                             "in the extraction layout; keep 'valid' when selecting points.")
        item["valid"] = validity(item["landmarks"], item.get("confidence"))
    if "imputed" not in item:
        item["imputed"] = torch.zeros_like(item["valid"])
    return item


def select_columns(mask: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``mask[:, columns]`` for a bool Tensor[T, N] (through numpy: 3x faster than torch's bool gather)."""
    return torch.from_numpy(np.take(mask.numpy(), columns.numpy(), axis=1))  # C-contiguous, unlike a[:, i]


def select_points(landmarks: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``landmarks[:, columns]`` for a Tensor[T, N, C], as one gather over [T, N * C] (2x faster)."""
    frames, _, channels = landmarks.shape
    flat = (columns[:, None] * channels + torch.arange(channels)).view(-1)
    return landmarks.reshape(frames, -1).index_select(1, flat).view(frames, len(columns), channels)


def has_value(item: Item) -> torch.Tensor:
    """bool Tensor[T, N]: found or imputed."""
    return item["valid"] | item["imputed"]


def zero_missing_(item: Item) -> Item:
    """Landmarks of points without a value back to exactly zero, in place (after arithmetic moved them)."""
    landmarks = item["landmarks"].contiguous()
    # row indices (found by NumPy: 2.5x faster than torch's nonzero) + index_fill_: ~2.5x faster than a
    # masked_fill_ broadcast over the 3 channels
    missing = np.flatnonzero(~(item["valid"].numpy() | item["imputed"].numpy()))
    landmarks.view(-1, landmarks.shape[-1]).index_fill_(0, torch.from_numpy(missing), 0.0)
    item["landmarks"] = landmarks
    return item


def layout_points(item: Item) -> int:
    """Size of the extraction layout the item's points come from (543, or 553 with refined faces)."""
    return int(item.get("layout_points", item["landmarks"].shape[1]))


def point_ids(item: Item) -> torch.Tensor:
    """LongTensor[N]: each column's index in the extraction layout."""
    ids = item.get("point_ids")
    return ids if ids is not None else torch.arange(item["landmarks"].shape[1])


def columns_of(item: Item, layout_ids: Union[Sequence[int], np.ndarray], who: str) -> torch.Tensor:
    """Columns of the item holding the given layout points, in that order; an error names what is missing.

    One lookup table over the layout (NumPy: ~5x faster than a dict of the item's columns per call).
    """
    wanted = np.asarray(layout_ids, dtype=np.int64)
    where = _column_table(item)
    columns = np.full(len(wanted), -1, dtype=np.int64)
    known = (wanted >= 0) & (wanted < len(where))
    columns[known] = where[wanted[known]]
    if (columns < 0).any():
        missing = wanted[columns < 0].tolist()
        raise ValueError(f"{who} needs layout points {missing[:10]}{'...' if len(missing) > 10 else ''}, which "
                         "the item no longer holds; apply it before SelectPoints or keep those points.")
    return torch.from_numpy(columns)


def _column_table(item: Item) -> np.ndarray:
    """int64 [max id + 1]: the item's column of each layout point, -1 where it holds none. Kept per
    ``point_ids`` tensor (SelectPoints gives every item the same one): the table is made once."""
    ids = item.get("point_ids")
    if ids is None:
        return np.arange(item["landmarks"].shape[1])
    held = _TABLES.get(id(ids))
    if held is not None and held[0]() is ids and held[1] == ids._version:
        return held[2]
    values = ids.numpy()
    table = np.full(int(values.max(initial=-1)) + 1, -1, dtype=np.int64)
    table[values] = np.arange(len(values))  # a point held twice: its last column, as before
    table.setflags(write=False)
    if len(_TABLES) >= _MAX_TABLES:
        _TABLES.clear()
    _TABLES[id(ids)] = (weakref.ref(ids), ids._version, table)
    return table


# id of a point_ids tensor -> (a weak reference to it, its version, its table): the id of a tensor gone is
# reused and a tensor changed in place has a new version, hence the checks
_TABLES: Dict[int, Tuple["weakref.ReferenceType[torch.Tensor]", int, np.ndarray]] = {}
_MAX_TABLES = 64


def require_xyz(item: Item, who: str) -> None:
    channels = item["landmarks"].shape[-1]
    if channels != XYZ:
        raise ValueError(f"{who} got landmarks with {channels} channels; expected x, y, z ({XYZ}). "
                         "Velocity appends channels: put it last in Compose.")


class AffineMap:
    """Maps of x, y, z that geometric steps (Normalize, Mirror, RandomAffine) gave an item but did not apply
    yet: p' = M (s * p + c) + o, with the scale s and shift c per frame ([T, 3]) or per clip ([3]), and
    the matrix M ([3, 3]) and offset o ([3]) per clip.

    ``apply_steps`` runs consecutive geometric steps as one map: composed in float64, applied to the
    landmarks in one multiply-add and at most one matrix product, with one re-zeroing of points without
    a value, instead of passes and a re-zeroing per step. The result equals the steps one by one up to
    float32 rounding (the composed coefficients are rounded once instead of per step).
    """

    def __init__(self) -> None:
        self.scale: Optional[np.ndarray] = None  # float64 [3] or [T, 3]; None: ones
        self.shift: Optional[np.ndarray] = None  # float64 [3] or [T, 3]; None: zeros
        self.matrix: Optional[np.ndarray] = None  # float64 [3, 3]; None: the identity
        self.offset: Optional[np.ndarray] = None  # float64 [3]; None: zeros

    @property
    def identity(self) -> bool:
        return self.scale is None and self.shift is None and self.matrix is None

    def then(self, matrix: np.ndarray, offset: np.ndarray) -> "AffineMap":
        """This map followed by p -> matrix p + offset: ``matrix`` [3, 3], or its diagonal [3] (a scale per
        axis, as Mirror's flip; per frame [T, 3] before any matrix); ``offset`` [3] (or [T, 3] likewise)."""
        if matrix.ndim == offset.ndim:  # a diagonal
            if self.matrix is None:  # into the multiply-add
                self.scale = matrix if self.scale is None else self.scale * matrix
                self.shift = offset if self.shift is None else self.shift * matrix + offset
                return self
            if matrix.ndim != 1:
                raise ValueError("a per-frame scale after a matrix: apply the map first")
            matrix = np.diag(matrix)
        self.matrix = matrix if self.matrix is None else matrix @ self.matrix
        self.offset = offset if self.offset is None else self.offset @ matrix.T + offset
        return self

    def apply(self, item: Item) -> Item:
        """The item with this map applied to its landmarks (new memory) and missing points zero again."""
        if self.identity:
            return item
        landmarks = item["landmarks"].float()
        frames, count, channels = landmarks.shape
        if self.scale is not None or self.shift is not None:
            landmarks = _multiply_add(landmarks, self.scale, self.shift)
        if self.matrix is not None:
            # numpy's [T*N, 3] x [3, 3] product is ~3x faster than torch's here; the offset is added as one
            # row of N * 3 values (a same-shape add; broadcasting over the 3 channels is ~5x slower)
            rows = landmarks.contiguous().numpy().reshape(-1, channels) @ self.matrix.T.astype(np.float32)
            moved = torch.from_numpy(rows.reshape(frames, count * channels))
            if self.offset is not None:
                moved.add_(torch.from_numpy(np.tile(self.offset.astype(np.float32), count)))
            landmarks = moved.view(frames, count, channels)
        item["landmarks"] = landmarks
        return zero_missing_(item)


def _multiply_add(landmarks: torch.Tensor, scale: Optional[np.ndarray], shift: Optional[np.ndarray]) -> torch.Tensor:
    """scale * landmarks + shift (new memory), each [3] (per clip) or [T, 3] (per frame) or None."""
    frames, count, channels = landmarks.shape
    per_clip = all(a is None or a.ndim == 1 for a in (scale, shift))
    if per_clip:  # rows of N * 3 values: same-shape arithmetic
        values = landmarks.reshape(frames, count * channels)
        factors = [None if a is None else torch.from_numpy(np.tile(a.astype(np.float32), count))
                   for a in (scale, shift)]
    else:
        values = landmarks
        factors = [None if a is None else torch.from_numpy(np.broadcast_to(a, (frames, channels)).astype(np.float32))
                   [:, None, :] for a in (scale, shift)]
    times, plus = factors
    if plus is None:
        assert times is not None  # (an identity map is never applied)
        moved = values * times
    else:
        moved = values + plus if times is None else torch.addcmul(plus, values, times)
    return moved.view(frames, count, channels)


def planned_call(step: Any, item: Item) -> Item:
    """``__call__`` of a geometric step: its ``plan`` applied at once."""
    return step.plan(item).apply(item)


def apply_steps(steps: Iterable[Callable[[Any], Any]], item: Any) -> Any:
    """The item through ``steps`` in order; consecutive geometric steps (whose ``__call__`` is
    ``planned_call``: a subclass that overrides it runs as it says) as one map."""
    pending: Optional[AffineMap] = None
    for step in steps:
        if type(step).__call__ is planned_call:
            pending = step.plan(item, pending)  # type: ignore[attr-defined]
            continue
        if pending is not None:
            item, pending = pending.apply(item), None
        item = step(item)
    return pending.apply(item) if pending is not None else item


class Transform:
    """A step on an item dict: ``__call__(item) -> item``; subclasses give ``_params`` for ``repr``.

    A step that only maps x, y, z the same way for every point of a frame may give
    ``plan(item, pending) -> AffineMap`` and ``__call__ = planned_call`` (as Normalize, Mirror and
    RandomAffine do): ``apply_steps`` then applies a run of such steps as one map."""

    def _params(self) -> Dict[str, object]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __call__(self, item: Item) -> Item:
        raise NotImplementedError


class RandomTransform(Transform):
    """A transform with its own ``torch.Generator`` per call.

    With ``seed``: the generator is seeded from (seed, epoch, sample id, transform class), so the same seed,
    epoch and sample give the same draw in the main process and in any DataLoader worker, whatever the
    order or the worker. Call ``set_epoch(n)`` (``Compose.set_epoch``) before each epoch for a new draw.
    Without a seed: the generator is seeded from torch's global generator, which DataLoader seeds
    differently in each worker and each epoch, so workers do not repeat each other.
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def generator(self, item: Item) -> torch.Generator:
        if self.seed is None:
            seed = int(torch.randint(0, 2 ** 62, (), dtype=torch.int64))
        else:
            name = f"{self.seed}/{self.epoch}/{item.get('id', '')}/{type(self).__name__}".encode()
            seed = int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "little") >> 2
        return torch.Generator().manual_seed(seed)

    def _params(self) -> Dict[str, object]:
        return {"seed": self.seed} if self.seed is not None else {}


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One float drawn uniformly from [low, high] with ``generator``."""
    return low + (high - low) * float(torch.rand((), generator=generator))


class Compose(Transform):
    """Apply transforms in order. ``seed`` seeds the random ones that have no seed of their own."""

    def __init__(self, transforms: Iterable[Callable[[Item], Item]], seed: Optional[int] = None) -> None:
        self.transforms: List[Callable[[Item], Item]] = [self._seeded(t, seed) for t in transforms]

    @staticmethod
    def _seeded(transform: Callable[[Item], Item], seed: Optional[int]) -> Callable[[Item], Item]:
        """A seeded copy of a random transform that has no seed (the caller's object is left as it was)."""
        if seed is None or not isinstance(transform, RandomTransform) or transform.seed is not None:
            return transform
        transform = copy.copy(transform)
        transform.seed = seed
        return transform

    def set_epoch(self, epoch: int) -> None:
        """New draws for every random transform (call before each epoch; see the module docs on workers)."""
        for t in self.transforms:
            if hasattr(t, "set_epoch"):
                t.set_epoch(epoch)

    def __call__(self, item: Item) -> Item:
        return apply_steps(self.transforms, item)

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"
