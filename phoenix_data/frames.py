"""List and read one sample's frames: sorted, size-checked, decoded, RGB. Nothing else."""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional, Tuple, Union

if TYPE_CHECKING:
    import numpy as np

# Frames outside these bounds are refused before decoding: MediaPipe's graph aborts the whole process
# on a side of 32767 px or more (an OpenCV assertion in its image warp), and a huge PNG would be
# decoded into gigabytes. PHOENIX frames are 210x260; 4K video is 3840x2160.
# PHOENIX_DATA_MAX_FRAME_SIDE raises the upper bound for unusually large video (at your own risk).
MIN_FRAME_SIDE = 16
MAX_FRAME_SIDE = 8192
MAX_FRAME_SIDE_ENV = "PHOENIX_DATA_MAX_FRAME_SIDE"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FramesError(RuntimeError):
    """A sample's frames are missing, empty, unreadable, undecodable or of an impossible size."""


def list_frames(frames_dir: Union[str, Path]) -> List[Path]:
    """The PNG frames of one sample in time order (zero-padded names sort in time order).

    Non-PNG files (the stray ``.lprof`` some copies hold) are ignored.
    """
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise FramesError(f"frame folder {str(frames_dir)!r} does not exist; is the release's "
                          "features/fullFrame-210x260px/ folder unpacked?")
    try:
        frames = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    except OSError as exc:
        raise FramesError(f"frame folder {str(frames_dir)!r} cannot be listed: {exc.strerror or exc}.") from None
    if not frames:
        raise FramesError(f"frame folder {str(frames_dir)!r} holds no PNG frames.")
    return frames


def png_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG's header, or None when ``data`` does not start like a PNG."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE):
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def check_frame_size(path: Path, width: int, height: int) -> None:
    """Refuse a frame no camera makes, before it reaches MediaPipe (which may abort the process)."""
    largest = int(os.environ.get(MAX_FRAME_SIDE_ENV, MAX_FRAME_SIDE))
    if not (MIN_FRAME_SIDE <= width <= largest and MIN_FRAME_SIDE <= height <= largest):
        raise FramesError(f"frame {str(path)!r} is {width}x{height} pixels; expected each side within "
                          f"{MIN_FRAME_SIDE}-{largest} (PHOENIX frames are 210x260). Replace the file.")


def read_frame_rgb(path: Path) -> "np.ndarray":
    """One frame as uint8 RGB [H, W, 3]; MediaPipe wants RGB, OpenCV decodes to BGR."""
    import cv2  # noqa: PLC0415 - keep `import phoenix_data` light
    import numpy as np  # noqa: PLC0415

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:  # PermissionError, EIO on a failing disk, a file removed meanwhile
        raise FramesError(f"frame {str(path)!r} cannot be read: {exc.strerror or exc}.") from None
    size = png_size(data[:24].tobytes())
    if size is not None:
        check_frame_size(path, *size)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FramesError(f"frame {str(path)!r} cannot be decoded as an image ({data.size} bytes).")
    check_frame_size(path, image.shape[1], image.shape[0])  # not a PNG after all: checked once decoded
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frames_rgb(paths: List[Path]) -> Iterator["np.ndarray"]:
    """Decode frames one at a time, so a long video never sits in memory whole."""
    for path in paths:
        yield read_frame_rgb(path)


def check_frame(frame: "np.ndarray", index: int, size: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """(height, width) of decoded frame ``index``: uint8 RGB [H, W, 3], the size of the video's first frame.

    Raises ValueError naming the frame otherwise (an estimator's input check).
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or str(frame.dtype) != "uint8":
        raise ValueError(f"frame {index}: shape {frame.shape} {frame.dtype}; expected uint8 RGB [H, W, 3].")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}; the video's first frame is "
                         f"{size[1]}x{size[0]}.")
    return frame.shape[0], frame.shape[1]
