"""Named point subsets, the left/right mirror maps, and SelectPoints.

Face-mesh indices are face-local (0..467; add ``POSE_POINTS`` for the extraction layout). Sources:

- Face regions: the point sets of the connection lists in MediaPipe's
  ``mediapipe/python/solutions/face_mesh_connections.py`` (mediapipe 0.10.21, Apache-2.0): FACEMESH_FACE_OVAL,
  FACEMESH_LIPS, FACEMESH_LEFT_EYE, FACEMESH_RIGHT_EYE, FACEMESH_LEFT_EYEBROW, FACEMESH_RIGHT_EYEBROW,
  FACEMESH_NOSE, each sorted ascending. "left"/"right" are the person's (MediaPipe's convention).
- Face mirror map: derived from MediaPipe's canonical face model
  (``mediapipe/modules/face_geometry/data/canonical_face_model.obj``, Apache-2.0), whose 468 vertices are
  exactly symmetric about x = 0: each vertex maps to the vertex at its reflection (distance 0.0 for all 468;
  the map is an involution; its 28 fixed points are the vertices with x = 0). tests/test_transforms.py checks
  it against the installed face_mesh_connections: eyes and eyebrows map onto each other, lips, oval and
  nose onto themselves, and 1316 of the 1322 tessellation edges onto edges (the other 6 are diagonals the
  mesh triangulates asymmetrically).
- Pose mirror map and upper body: MediaPipe's PoseLandmark enum (``mediapipe/python/solutions/pose.py``):
  0 nose; 1-3 left eye inner/eye/outer <-> 4-6 right; 7/8 ears; 9/10 mouth corners; from 11 on, odd = left,
  even = right (shoulders 11/12 ... foot index 31/32). The upper body is 0-24 (down to the hips), the
  25 landmarks of MediaPipe's former upper-body pose model.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Sequence, Tuple, Union

import torch

from ..record import FACE_POINTS, HAND_POINTS, POSE_POINTS
from .base import Item, Transform, ensure_masks, layout_points, part_slices, point_ids, select_columns, select_points

POSE_LEFT_SHOULDER = 11
POSE_RIGHT_SHOULDER = 12
POSE_UPPER_BODY: Tuple[int, ...] = tuple(range(25))
POSE_MIRROR_PAIRS: Tuple[Tuple[int, int], ...] = (
    (1, 4), (2, 5), (3, 6), (7, 8), (9, 10), *((i, i + 1) for i in range(11, POSE_POINTS, 2)))

FACE_OVAL: Tuple[int, ...] = (  # FACEMESH_FACE_OVAL
    10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284,
    288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454
)
FACE_LIPS: Tuple[int, ...] = (  # FACEMESH_LIPS
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267,
    269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415
)
FACE_LEFT_EYE: Tuple[int, ...] = (  # FACEMESH_LEFT_EYE
    249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466
)
FACE_RIGHT_EYE: Tuple[int, ...] = (  # FACEMESH_RIGHT_EYE
    7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246
)
FACE_LEFT_EYEBROW: Tuple[int, ...] = (  # FACEMESH_LEFT_EYEBROW
    276, 282, 283, 285, 293, 295, 296, 300, 334, 336
)
FACE_RIGHT_EYEBROW: Tuple[int, ...] = (  # FACEMESH_RIGHT_EYEBROW
    46, 52, 53, 55, 63, 65, 66, 70, 105, 107
)
FACE_NOSE: Tuple[int, ...] = (  # FACEMESH_NOSE
    1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344,
    440
)
# 220 left/right pairs; the other 28 points lie on the midline (x = 0) and map to themselves.
FACE_MIRROR_PAIRS: Tuple[Tuple[int, int], ...] = (
    (3, 248), (7, 249), (20, 250), (21, 251), (22, 252), (23, 253), (24, 254), (25, 255), (26, 256),
    (27, 257), (28, 258), (29, 259), (30, 260), (31, 261), (32, 262), (33, 263), (34, 264), (35, 265),
    (36, 266), (37, 267), (38, 268), (39, 269), (40, 270), (41, 271), (42, 272), (43, 273), (44, 274),
    (45, 275), (46, 276), (47, 277), (48, 278), (49, 279), (50, 280), (51, 281), (52, 282), (53, 283),
    (54, 284), (55, 285), (56, 286), (57, 287), (58, 288), (59, 289), (60, 290), (61, 291), (62, 292),
    (63, 293), (64, 294), (65, 295), (66, 296), (67, 297), (68, 298), (69, 299), (70, 300), (71, 301),
    (72, 302), (73, 303), (74, 304), (75, 305), (76, 306), (77, 307), (78, 308), (79, 309), (80, 310),
    (81, 311), (82, 312), (83, 313), (84, 314), (85, 315), (86, 316), (87, 317), (88, 318), (89, 319),
    (90, 320), (91, 321), (92, 322), (93, 323), (95, 324), (96, 325), (97, 326), (98, 327), (99, 328),
    (100, 329), (101, 330), (102, 331), (103, 332), (104, 333), (105, 334), (106, 335), (107, 336),
    (108, 337), (109, 338), (110, 339), (111, 340), (112, 341), (113, 342), (114, 343), (115, 344),
    (116, 345), (117, 346), (118, 347), (119, 348), (120, 349), (121, 350), (122, 351), (123, 352),
    (124, 353), (125, 354), (126, 355), (127, 356), (128, 357), (129, 358), (130, 359), (131, 360),
    (132, 361), (133, 362), (134, 363), (135, 364), (136, 365), (137, 366), (138, 367), (139, 368),
    (140, 369), (141, 370), (142, 371), (143, 372), (144, 373), (145, 374), (146, 375), (147, 376),
    (148, 377), (149, 378), (150, 379), (153, 380), (154, 381), (155, 382), (156, 383), (157, 384),
    (158, 385), (159, 386), (160, 387), (161, 388), (162, 389), (163, 390), (165, 391), (166, 392),
    (167, 393), (169, 394), (170, 395), (171, 396), (172, 397), (173, 398), (174, 399), (176, 400),
    (177, 401), (178, 402), (179, 403), (180, 404), (181, 405), (182, 406), (183, 407), (184, 408),
    (185, 409), (186, 410), (187, 411), (188, 412), (189, 413), (190, 414), (191, 415), (192, 416),
    (193, 417), (194, 418), (196, 419), (198, 420), (201, 421), (202, 422), (203, 423), (204, 424),
    (205, 425), (206, 426), (207, 427), (208, 428), (209, 429), (210, 430), (211, 431), (212, 432),
    (213, 433), (214, 434), (215, 435), (216, 436), (217, 437), (218, 438), (219, 439), (220, 440),
    (221, 441), (222, 442), (223, 443), (224, 444), (225, 445), (226, 446), (227, 447), (228, 448),
    (229, 449), (230, 450), (231, 451), (232, 452), (233, 453), (234, 454), (235, 455), (236, 456),
    (237, 457), (238, 458), (239, 459), (240, 460), (241, 461), (242, 462), (243, 463), (244, 464),
    (245, 465), (246, 466), (247, 467)
)


# name -> (part, part-local indices)
_FACE_SUBSETS = {"face_contour": FACE_OVAL, "lips": FACE_LIPS, "left_eye": FACE_LEFT_EYE,
                 "right_eye": FACE_RIGHT_EYE, "left_eyebrow": FACE_LEFT_EYEBROW,
                 "right_eyebrow": FACE_RIGHT_EYEBROW, "nose": FACE_NOSE}
SUBSETS: Dict[str, Tuple[str, Tuple[int, ...]]] = {
    "pose": ("pose", tuple(range(POSE_POINTS))),
    "pose_upper_body": ("pose", POSE_UPPER_BODY),
    "face": ("face", tuple(range(FACE_POINTS))),
    **{name: ("face", idx) for name, idx in _FACE_SUBSETS.items()},
    "eyes": ("face", tuple(sorted(FACE_LEFT_EYE + FACE_RIGHT_EYE))),
    "eyebrows": ("face", tuple(sorted(FACE_LEFT_EYEBROW + FACE_RIGHT_EYEBROW))),
    "left_hand": ("left_hand", tuple(range(HAND_POINTS))),
    "right_hand": ("right_hand", tuple(range(HAND_POINTS))),
}


def subset_ids(name: str, num_points: int) -> List[int]:
    """Layout indices of a named subset in a layout of ``num_points`` (543, or 553 with refined faces)."""
    if name not in SUBSETS:
        raise ValueError(f"unknown point subset {name!r}; expected one of {', '.join(sorted(SUBSETS))}, "
                         "or a list of indices into the extraction layout.")
    part, local = SUBSETS[name]
    start = part_slices(num_points)[part].start
    return [start + i for i in local]


@lru_cache(maxsize=None)
def mirror_ids(num_points: int) -> torch.Tensor:
    """LongTensor[num_points]: for each layout point, the point it becomes in a horizontally mirrored image.

    Cached per layout: do not modify the returned tensor.
    """
    slices = part_slices(num_points)
    if slices["face"].stop - slices["face"].start != FACE_POINTS:
        raise ValueError(f"Mirror supports the {FACE_POINTS}-point face mesh; this layout has {num_points} points "
                         "(refine_face_landmarks=True), whose iris points have no established mirror map here.")
    mirror = torch.arange(num_points)
    face = slices["face"].start
    for offset, pairs in ((0, POSE_MIRROR_PAIRS), (face, FACE_MIRROR_PAIRS)):
        for a, b in pairs:
            mirror[offset + a], mirror[offset + b] = offset + b, offset + a
    left, right = slices["left_hand"], slices["right_hand"]
    mirror[left] = torch.arange(right.start, right.stop)
    mirror[right] = torch.arange(left.start, left.stop)
    return mirror


def take_points(item: Item, columns: torch.Tensor) -> Item:
    """The item restricted to (or reordered by) ``columns``: landmarks, confidence and masks alike."""
    item["landmarks"] = select_points(item["landmarks"], columns)
    item["confidence"] = item["confidence"].index_select(1, columns)
    for key in ("valid", "imputed"):
        item[key] = select_columns(item[key], columns)
    return item


class SelectPoints(Transform):
    """Keep a subset of the points, in the order given: named subsets and/or lists of layout indices.

    ``SelectPoints("pose_upper_body", "left_hand", "right_hand", "lips")``: names from ``SUBSETS``
    (within a name, ascending index order); a list holds indices into the extraction layout (0..542: pose
    0-32, face 33-500, left hand 501-521, right hand 522-542). A point named twice is kept once, at its
    first place. Landmarks, confidence and masks follow; ``point_ids`` records which layout points remain,
    so later steps (Normalize, Mirror) still find shoulders and mirror partners.
    """

    def __init__(self, *subsets: Union[str, Sequence[int]]) -> None:
        if not subsets:
            raise ValueError("SelectPoints needs at least one subset name or index list.")
        for s in subsets:
            if isinstance(s, str):
                subset_ids(s, POSE_POINTS + FACE_POINTS + 2 * HAND_POINTS)  # unknown names fail here
        self.subsets = tuple(s if isinstance(s, str) else tuple(int(i) for i in s) for s in subsets)
        self._ids: Dict[int, torch.Tensor] = {}  # layout size -> LongTensor of the wanted layout points

    def layout_ids(self, num_points: int) -> List[int]:
        ids: List[int] = []
        for s in self.subsets:
            ids += subset_ids(s, num_points) if isinstance(s, str) else list(s)
        bad = [i for i in ids if not 0 <= i < num_points]
        if bad:
            raise ValueError(f"point indices {bad[:10]} outside the extraction layout of {num_points} points.")
        return list(dict.fromkeys(ids))

    def ids(self, num_points: int) -> torch.Tensor:
        """LongTensor[K]: the layout points kept, in order (``layout_ids``; cached: do not modify it)."""
        if num_points not in self._ids:
            self._ids[num_points] = torch.tensor(self.layout_ids(num_points), dtype=torch.long)
        return self._ids[num_points]

    def __call__(self, item: Item) -> Item:
        ensure_masks(item)
        n = layout_points(item)
        wanted = self.ids(n)
        take_points(item, wanted if "point_ids" not in item else self._columns(item, wanted.tolist()))
        item["point_ids"], item["layout_points"] = wanted, n
        return item

    @staticmethod
    def _columns(item: Item, wanted: List[int]) -> torch.Tensor:
        current = {pid: col for col, pid in enumerate(point_ids(item).tolist())}
        missing = [p for p in wanted if p not in current]
        if missing:
            raise ValueError(f"SelectPoints wants layout points {missing[:10]} that an earlier SelectPoints "
                             "removed; select from the full layout or widen the earlier selection.")
        return torch.tensor([current[p] for p in wanted], dtype=torch.long)

    def __repr__(self) -> str:
        shown = [repr(s) if isinstance(s, str) else f"<{len(s)} indices>" for s in self.subsets]
        return f"SelectPoints({', '.join(shown)})"
