"""List and read one sample's frames: sorted, decoded, RGB. Nothing else."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Union

import numpy as np


class FramesError(RuntimeError):
    """A sample's frames are missing, empty or undecodable."""


def list_frames(frames_dir: Union[str, Path]) -> List[Path]:
    """The PNG frames of one sample in time order (zero-padded names sort in time order).

    Non-PNG files (the stray ``.lprof`` some copies hold) are ignored.
    """
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise FramesError(f"frame folder {str(frames_dir)!r} does not exist; is the release's "
                          "features/fullFrame-210x260px/ folder unpacked?")
    frames = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not frames:
        raise FramesError(f"frame folder {str(frames_dir)!r} holds no PNG frames.")
    return frames


def read_frame_rgb(path: Path) -> np.ndarray:
    """One frame as uint8 RGB [H, W, 3]; MediaPipe wants RGB, OpenCV decodes to BGR."""
    import cv2  # noqa: PLC0415 - keep `import phoenix_data` light

    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FramesError(f"frame {str(path)!r} cannot be decoded as an image ({data.size} bytes).")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frames_rgb(paths: List[Path]) -> Iterator[np.ndarray]:
    """Decode frames one at a time, so a long video never sits in memory whole."""
    for path in paths:
        yield read_frame_rgb(path)
