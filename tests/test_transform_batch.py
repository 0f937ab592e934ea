"""Pipelines run over a whole batch (``transforms.batch``) against the same steps item by item.

Real LMDB files (records written by the cache, no extractor) and real DataLoader workers. Every batch-path
test also checks that the batch path ran: the items are rows of one padded batch.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers import assert_items_close, cached_train_split, fake_record, open_cached
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from phoenix_data import PhoenixLandmarks, collate_ctc
from phoenix_data.extract.fake import FakeExtractorSettings
from phoenix_data.record import LandmarkRecord, part_slices
from phoenix_data.transforms import (
    Compose,
    FillGaps,
    FrameDropout,
    Mirror,
    Normalize,
    RandomAffine,
    SelectPoints,
    TimeWarp,
    Velocity,
)
from phoenix_data.transforms.batch import batchable

FAKE = FakeExtractorSettings()
RELEASE = "PHOENIX-2014-T"
LENGTHS = [5, 17, 9, 30, 12, 1, 23, 8, 14, 11, 26, 3]
S = part_slices(543)
SHOULDERS = [11, 12]
SIZE = (210, 260)
NO_POSE, ODD_VALUES = 9, 10  # the sample never showing its pose; the one storing values where a part is missing


def records():
    """Records with hands missing in some frames, shoulders missing or on top of each other in some, one
    sample without any pose (Normalize leaves it), one whose record holds values for a hand it says is missing."""
    rng = np.random.default_rng(5)
    for i, frames in enumerate(LENGTHS):
        record = fake_record(frames, seed=i)
        record.landmarks[rng.uniform(size=frames) < 0.3, S["left_hand"]] = 0
        record.landmarks[rng.uniform(size=frames) < 0.2, S["right_hand"]] = 0
        if i % 3 == 1:
            record.landmarks[::4, S["pose"]] = 0  # no shoulders in every fourth frame
            record.landmarks[1::5, 12] = record.landmarks[1::5, 11]  # shoulders on top of each other
        if i == NO_POSE:
            record.landmarks[:, S["pose"]] = 0
        found = record.presence().copy()
        if i == ODD_VALUES:
            found[::2, 2] = False  # the left hand "missing" in even frames, its values still stored
        yield LandmarkRecord(record.landmarks, record.confidence * np.repeat(found, [33, 468, 21, 21], axis=1),
                             width=210, height=260, found=found)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    return cached_train_split(tmp_path_factory.mktemp("batch"), records(), RELEASE)


def dataset(cached, **kwargs) -> PhoenixLandmarks:
    return open_cached(cached, **kwargs)


PIPELINES = {
    "typical": lambda: [SelectPoints("pose_upper_body", "left_hand", "right_hand", "lips"),
                        Normalize(image_size=SIZE), Mirror(p=0.5), RandomAffine(image_size=SIZE),
                        TimeWarp(speed=(0.8, 1.25))],
    "mirror first, per clip": lambda: [SelectPoints("pose", "left_hand", "right_hand"), Mirror(p=0.5),
                                       Normalize(mode="clip"), TimeWarp(speed=0.7)],
    "time first": lambda: [SelectPoints("pose_upper_body", "right_hand", "left_hand"), TimeWarp(speed=(0.5, 2.0)),
                           Normalize(), RandomAffine(rotation=30, image_size=SIZE), Mirror(p=0.7)],
    "all points": lambda: [Normalize(), Mirror(p=0.5), RandomAffine()],
    "matrix, then per frame": lambda: [SelectPoints("lips", "pose"), RandomAffine(), Normalize(image_size=SIZE),
                                       Mirror(p=1.0), Mirror(p=0.5)],
    "time alone": lambda: [TimeWarp(speed=(0.8, 1.25))],
    "gaps filled first (transforms.md's)": lambda: [
        SelectPoints("pose_upper_body", "left_hand", "right_hand", "lips", "eyes", "eyebrows"),
        FillGaps(max_gap=3), Normalize(image_size=SIZE), Mirror(p=0.5), RandomAffine(), TimeWarp(speed=(0.8, 1.25))],
    "gaps filled after time": lambda: [SelectPoints("pose", "left_hand", "right_hand"), TimeWarp(speed=(0.5, 2.0)),
                                       FillGaps(max_gap=2, parts=("pose", "left_hand", "right_hand")),
                                       Mirror(p=0.5), Normalize(), TimeWarp(speed=(0.8, 1.25))],
    "select alone": lambda: [SelectPoints([12, 11, 520, 530], "nose")],
}
INDICES = [3, 0, 5, 9, 7, 10, 1, 11, 4]


def expected_items(cached, steps, seed, dtype=torch.float32, epoch=0):
    """The pipeline item by item on the full items (the reference)."""
    reference = Compose(steps, seed=seed)
    reference.set_epoch(epoch)
    plain = dataset(cached)
    items = []
    for i in range(len(plain)):
        item = reference(plain[i])
        # points without a value zero, as the transforms promise (the item path leaves the values a record
        # stores for a part it marks missing, ODD_VALUES's, where no step maps them)
        item["landmarks"] = item["landmarks"].masked_fill(~(item["valid"] | item["imputed"])[..., None], 0).to(dtype)
        items.append(item)
    return items


def rows_of_one_batch(items) -> bool:
    bases = {id(item[key]._base) for item in items for key in ("landmarks", "confidence", "valid", "imputed")}
    return len(bases) == 4 and all(item["landmarks"]._base is not None for item in items)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_a_batch_gives_the_items_of_the_steps_item_by_item(cached, name, caplog):
    steps = PIPELINES[name]()
    assert batchable(steps[1:] if isinstance(steps[0], SelectPoints) else steps)
    expected = expected_items(cached, steps, seed=4)
    ds = dataset(cached, transform=Compose(PIPELINES[name](), seed=4))
    with caplog.at_level(logging.WARNING):
        items = ds.__getitems__(INDICES)
    assert rows_of_one_batch(items)
    for index, item in zip(INDICES, items):
        assert_items_close(item, expected[index])
    for index in (0, 5, NO_POSE):  # one at a time: a batch of one
        assert_items_close(ds[index], expected[index])
    if any(isinstance(step, Normalize) for step in steps):
        assert f"sample 's{NO_POSE}' has no frame with both shoulders found" in caplog.text
        assert "coords" not in items[INDICES.index(NO_POSE)]
        assert all(item["coords"] == "shoulders" for index, item in zip(INDICES, items) if index != NO_POSE)


def test_float16_batches_and_a_new_epoch(cached):
    steps = PIPELINES["typical"]
    ds = dataset(cached, transform=Compose(steps(), seed=2), dtype=torch.float16)
    drawn = []
    for epoch in (0, 1):
        ds.transform.set_epoch(epoch)
        expected = expected_items(cached, steps(), seed=2, dtype=torch.float16, epoch=epoch)
        items = ds.__getitems__(INDICES)
        assert rows_of_one_batch(items) and items[0]["landmarks"].dtype == torch.float16
        for index, item in zip(INDICES, items):
            assert_items_close(item, expected[index])
        drawn.append(items)
    assert any(a["landmarks"].shape != b["landmarks"].shape or not torch.equal(a["landmarks"], b["landmarks"])
               for a, b in zip(*drawn)), "a new epoch must give new draws"


def test_collate_passes_a_transformed_batch_on_without_a_copy(cached):
    ds = dataset(cached, transform=Compose(PIPELINES["typical"](), seed=1))
    items = ds.__getitems__(INDICES)
    batch = collate_ctc(items)
    assert batch["landmarks"] is items[0]["landmarks"]._base
    assert batch["lengths"].tolist() == [item["num_frames"] for item in items]
    for b, item in enumerate(items):  # zero after each sample's frames
        assert not batch["landmarks"][b, item["num_frames"]:].any() and not batch["valid"][b, item["num_frames"]:].any()
        assert not batch["confidence"][b, item["num_frames"]:].any()


def test_points_without_a_value_are_zero_even_where_the_record_holds_values(cached):
    """The record of ODD_VALUES stores values for its left hand in frames where it says the hand is missing."""
    ds = dataset(cached, transform=Compose([TimeWarp(speed=1.0)]))
    item = ds.__getitems__([ODD_VALUES])[0]
    hand = SelectPoints("left_hand").ids(543)
    missing = ~item["valid"][:, hand]
    assert missing[::2].all() and not item["landmarks"][:, hand][missing].any() and not item["confidence"][:, hand][
        missing].any()
    assert item["landmarks"][1::2, hand].abs().sum() > 0  # (where found, its values)


@pytest.mark.parametrize("other", [lambda: FrameDropout(p=0.2), lambda: FillGaps(parts=("left_hand",)),
                                   lambda: Velocity()], ids=["FrameDropout", "FillGaps one hand", "Velocity"])
def test_a_pipeline_with_another_step_runs_item_by_item(cached, other):
    """FrameDropout and Velocity have no batch version; FillGaps of one hand only is not the same on points
    Mirror swapped before it (the batch path swaps them in the read)."""
    steps = lambda: [SelectPoints("pose_upper_body", "left_hand", "right_hand"), Mirror(p=0.5),  # noqa: E731
                     Normalize(), other()]
    assert not batchable(steps()[1:])
    expected = expected_items(cached, steps(), seed=6)
    items = dataset(cached, transform=Compose(steps(), seed=6)).__getitems__(INDICES)
    assert not rows_of_one_batch(items)
    for index, item in zip(INDICES, items):
        assert item.keys() == expected[index].keys()
        assert all(torch.equal(item[k], expected[index][k]) for k in ("landmarks", "confidence", "valid", "imputed"))


def test_a_subclass_of_a_step_runs_item_by_item_as_it_says(cached):
    class Marked(RandomAffine):
        def __call__(self, item):
            item = super().__call__(item)
            item["marked"] = True
            return item

    steps = [SelectPoints("pose_upper_body"), Normalize(), Marked()]
    assert not batchable(steps[1:])
    items = dataset(cached, transform=Compose(steps, seed=0)).__getitems__([0, 1])
    assert all(item["marked"] for item in items) and not rows_of_one_batch(items)


def test_mirror_without_the_partners_of_the_selected_points_names_them(cached):
    ds = dataset(cached, transform=Compose([SelectPoints("left_hand"), Normalize(), Mirror(p=1.0)]))
    with pytest.raises(ValueError, match=r"Mirror \(its left/right partners\) needs layout points \[522"):
        ds.__getitems__([0, 1])
    ds = dataset(cached, transform=Compose([SelectPoints("left_hand"), Mirror(p=1.0)]))  # swapped by the read
    with pytest.raises(ValueError, match=r"Mirror \(its left/right partners\) needs layout points \[522"):
        ds.__getitems__([0, 1])


def test_workers_give_the_batches_of_the_steps_item_by_item(cached):
    """num_workers=2: each worker runs the pipeline over its batches; the main process collates nothing."""
    steps = PIPELINES["typical"]
    expected = expected_items(cached, steps(), seed=9)
    ds = dataset(cached, transform=Compose(steps(), seed=9))
    loader = DataLoader(ds, batch_size=4, collate_fn=collate_ctc, num_workers=2)
    seen = 0
    for b, batch in enumerate(loader):
        indices = list(range(4 * b, min(4 * b + 4, len(ds))))
        reference = collate_ctc([expected[i] for i in indices])
        assert batch["id"] == reference["id"] and torch.equal(batch["lengths"], reference["lengths"])
        for key in ("valid", "imputed", "confidence", "targets"):
            assert torch.equal(batch[key], reference[key]), key
        scale = float(reference["landmarks"].abs().max())
        assert float((batch["landmarks"] - reference["landmarks"]).abs().max()) <= 1e-5 * scale  # (assert_items_close)
        seen += len(indices)
    assert seen == len(ds)


BATCHED_STEPS = [lambda: Normalize(), lambda: Normalize("clip", image_size=SIZE), lambda: Mirror(p=1.0),
                 lambda: Mirror(p=0.5), lambda: RandomAffine(rotation=30, shear=10, image_size=SIZE),
                 lambda: RandomAffine(translate=(0.2, 0.1)), lambda: TimeWarp(speed=(0.5, 2.0)),
                 lambda: TimeWarp(speed=1.0), lambda: FillGaps(max_gap=2),
                 lambda: FillGaps(max_gap=5, parts=("pose", "face", "left_hand", "right_hand"))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 16), select=st.booleans(),
       order=st.lists(st.integers(0, len(BATCHED_STEPS) - 1), min_size=1, max_size=5),
       indices=st.lists(st.integers(0, len(LENGTHS) - 1), min_size=1, max_size=6))
def test_any_batched_pipeline_gives_the_items_of_the_steps_item_by_item(cached, seed, select, order, indices):
    """Any order of the batched steps, with or without a selection first, over any samples (repeats too)."""
    def steps():
        chosen = [BATCHED_STEPS[i]() for i in order]
        chosen = [s for i, s in enumerate(chosen)  # Normalize once
                  if not (isinstance(s, Normalize) and any(isinstance(p, Normalize) for p in chosen[:i]))]
        return ([SelectPoints("pose_upper_body", "left_hand", "right_hand", "lips")] if select else []) + chosen

    expected = expected_items(cached, steps(), seed=seed)
    items = dataset(cached, transform=Compose(steps(), seed=seed)).__getitems__(indices)
    assert rows_of_one_batch(items)
    for index, item in zip(indices, items):
        assert_items_close(item, expected[index])
