"""The HolisticLandmarker model bundle of the ``tasks`` backend, built offline from mediapipe 0.10.21's models.

MediaPipe 0.10.30 and later (the only releases for Python 3.13+) ship no model: their
HolisticLandmarker reads a ``holistic_landmarker.task`` that is normally downloaded from Google at
run time. A ``.task`` file is a flat, uncompressed zip of TFLite models with fixed names; the
legacy models inside the 0.10.21 wheel serve every one of them, two with normalization metadata
added and the face model padded to 478 points (``tflite_edit``).

Where the legacy models come from, in order: the installed mediapipe 0.10.21; else the 0.10.21
wheel fetched with ``pip download`` from PyPI (kept in the models folder); else a path the user
gives (a wheel, a folder holding ``mediapipe/modules``, or an official ``holistic_landmarker.task``,
used as it is). The bundle lands in the models folder (``$PHOENIX_DATA_MODELS``, else the XDG cache:
``~/.cache/phoenix_data/models``) beside a manifest with its SHA-256, checked on every load.
``phoenix-models build`` builds it; the ``tasks`` backend builds it on first need, once.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

from ...record import FACE_POINTS, FACE_POINTS_REFINED
from . import tflite_edit
from .runtime import LEGACY_MEDIAPIPE

log = logging.getLogger(__name__)

BUNDLE_NAME = "holistic_landmarker.task"
MANIFEST_SUFFIX = ".json"
BUILD_FORMAT = 1  # bump when the build's output changes: bundles of another format are rebuilt

# name in the bundle -> (legacy model under mediapipe/modules/, edit)
BUNDLE_MODELS: Dict[str, Tuple[str, str]] = {
    "pose_detector.tflite": ("pose_detection/pose_detection.tflite", "as is"),
    "pose_landmarks_detector.tflite": ("pose_landmark/pose_landmark_full.tflite", "normalize"),
    "face_detector.tflite": ("face_detection/face_detection_short_range.tflite", "as is"),
    "face_landmarks_detector.tflite": ("face_landmark/face_landmark.tflite", "pad face"),
    "hand_landmarks_detector.tflite": ("hand_landmark/hand_landmark_full.tflite", "as is"),
    "hand_roi_refinement.tflite": ("holistic_landmark/hand_recrop.tflite", "normalize"),
}
FACE_MODEL = "face_landmarks_detector.tflite"
# the legacy face model's points; the Tasks face graph reads the refined count
LEGACY_FACE_POINTS, TASKS_FACE_POINTS = FACE_POINTS, FACE_POINTS_REFINED
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same models give the same bundle bytes
_ALIGNMENT = 4  # MediaPipe maps the stored files directly: align each to 4 bytes


class BundleError(ValueError):
    """A bundle that is missing, damaged or not a HolisticLandmarker bundle; the message says the fix."""


MODELS_ENV = "PHOENIX_DATA_MODELS"


def default_models_dir() -> Path:
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "phoenix_data" / "models"


def default_bundle_path() -> Path:
    return default_models_dir() / BUNDLE_NAME


def manifest_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + MANIFEST_SUFFIX)


# ----------------------------------------------------------------------------- where models come from

ModelReader = Callable[[str], bytes]


def _dir_reader(modules: Path) -> ModelReader:
    return lambda rel: (modules / rel).read_bytes()


def _wheel_reader(wheel: Path) -> ModelReader:
    def read(rel: str) -> bytes:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(f"mediapipe/modules/{rel}")
    return read


def _installed_version() -> Optional[str]:
    from importlib import metadata  # noqa: PLC0415 - only when building

    try:
        return metadata.version("mediapipe")
    except metadata.PackageNotFoundError:
        return None


def installed_legacy_modules() -> Optional[Path]:
    """``mediapipe/modules`` of an installed mediapipe that has every legacy model, else None."""
    try:
        modules = tflite_edit.mediapipe_dir() / "modules"
    except tflite_edit.ModelEditError:
        return None
    return modules if all((modules / rel).is_file() for rel, _ in BUNDLE_MODELS.values()) else None


def download_legacy_wheel(dest: Path) -> Path:
    """mediapipe 0.10.21's wheel from PyPI (the models only: any platform's wheel holds the same files)."""
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"mediapipe-{LEGACY_MEDIAPIPE}-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", f"mediapipe=={LEGACY_MEDIAPIPE}", "--no-deps",
           "--only-binary=:all:", "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64",
           "--dest", str(dest), "--quiet"]
    log.warning("downloading mediapipe %s's wheel from PyPI for its models (~36 MB): %s",
                LEGACY_MEDIAPIPE, " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(f"mediapipe-{LEGACY_MEDIAPIPE}-*.whl"))
    if done.returncode != 0 or not found:
        raise BundleError(
            f"could not download mediapipe {LEGACY_MEDIAPIPE}'s wheel (for its models): `{' '.join(cmd)}` "
            f"exited {done.returncode}: {done.stderr.strip()[-500:]}\nDownload it elsewhere and run "
            f"`phoenix-models build --from mediapipe-{LEGACY_MEDIAPIPE}-....whl`.")
    return found[0]


def _reader_for(source: Path) -> Tuple[ModelReader, str]:
    if source.is_file() and source.suffix == ".whl":
        return _wheel_reader(source), f"wheel {source.name}"
    for modules in (source, source / "modules", source / "mediapipe" / "modules"):
        if all((modules / rel).is_file() for rel, _ in BUNDLE_MODELS.values()):
            return _dir_reader(modules), f"folder {modules}"
    raise BundleError(f"{source}: expected mediapipe {LEGACY_MEDIAPIPE}'s wheel (.whl), a folder holding its "
                      "mediapipe/modules/, or a holistic_landmarker.task; none of these is there.")


# ----------------------------------------------------------------------------- building

def bundle_models(read: ModelReader) -> Dict[str, bytes]:
    """The bundle's files, from the legacy models ``read`` returns."""
    out = {}
    for name, (rel, edit) in BUNDLE_MODELS.items():
        model = read(rel)
        if edit == "normalize":
            model = tflite_edit.add_image_normalization(model, Path(rel).stem)
        elif edit == "pad face":
            model = tflite_edit.pad_output(model, 0, (TASKS_FACE_POINTS - LEGACY_FACE_POINTS) * 3)
        out[name] = model
    return out


class _AlignedZip(zipfile.ZipFile):
    """A ZipFile whose stored files start on 4-byte offsets (zero bytes before each local header)."""

    def _writecheck(self, zinfo: zipfile.ZipInfo) -> None:
        assert self.fp is not None
        pad = -(self.fp.tell() + len(zinfo.FileHeader())) % _ALIGNMENT
        if pad:
            self.fp.write(b"\x00" * pad)
            zinfo.header_offset = self.fp.tell()
        super()._writecheck(zinfo)  # type: ignore[misc]


def write_bundle(models: Dict[str, bytes]) -> bytes:
    """A .task file: a flat zip of the models, stored uncompressed and 4-byte aligned, in name order."""
    buf = io.BytesIO()
    with _AlignedZip(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(models):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, models[name])
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600: a shared models folder must stay readable by all
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    sha256: str
    face_points: int  # 468: built from the legacy face model; 478: a refined (official) face model
    source: str

    def as_dict(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "face_points": self.face_points,
                "source": self.source}


def build_bundle(out: Optional[Path] = None, source: Optional[Path] = None) -> BundleInfo:
    """Write the bundle (and its manifest) to ``out``; see the module docstring for ``source``."""
    out = Path(out) if out is not None else default_bundle_path()
    start = time.perf_counter()
    if source is not None and Path(source).suffix == ".task":
        data = Path(source).read_bytes()
        face_points = inspect_bundle(data, str(source))
        described = f"bundle {Path(source).name}, used as it is"
    else:
        if source is not None:
            read, described = _reader_for(Path(source))
        elif (modules := installed_legacy_modules()) is not None:
            read, described = _dir_reader(modules), f"installed mediapipe {_installed_version()}"
        else:
            wheel = download_legacy_wheel(out.parent / "wheels")
            read, described = _wheel_reader(wheel), f"wheel {wheel.name}"
        try:
            data = write_bundle(bundle_models(read))
        except (KeyError, OSError, tflite_edit.ModelEditError) as exc:
            raise BundleError(f"could not build the bundle from {described}: {exc}") from exc
        face_points = LEGACY_FACE_POINTS
    info = BundleInfo(out, _sha256(data), face_points, described)
    _atomic_write(out, data)
    manifest = dict(info.as_dict(), format=BUILD_FORMAT, size=len(data), path=None)
    _atomic_write(manifest_path(out), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    log.info("model bundle %s written from %s in %.1f s (sha256 %s)", out, described,
             time.perf_counter() - start, info.sha256[:16])
    return info


def inspect_bundle(data: bytes, where: str, face_points: Optional[int] = None) -> int:
    """Check ``data`` is a HolisticLandmarker bundle; its real face points (468 or 478).

    ``face_points`` is what the bundle's manifest recorded for these bytes (their SHA-256 checked by the
    caller): then the face model is not read again, which needs mediapipe's TFLite schema module.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            missing = sorted(set(BUNDLE_MODELS) - names)
            if missing:
                raise BundleError(f"{where} is not a HolisticLandmarker bundle: it lacks {', '.join(missing)}. "
                                  "`phoenix-models build` writes one.")
            face = zf.read(FACE_MODEL)
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{where} is not a model bundle (not a zip file: {exc}). "
                          "`phoenix-models build --force` writes a new one.") from exc
    if face_points in (LEGACY_FACE_POINTS, TASKS_FACE_POINTS):
        return face_points
    return LEGACY_FACE_POINTS if tflite_edit.is_padded(face) else TASKS_FACE_POINTS


# ----------------------------------------------------------------------------- loading

_LOADED: Dict[Tuple[str, int, int], BundleInfo] = {}


def load_bundle(path: Optional[Union[str, Path]] = None, build: bool = True) -> BundleInfo:
    """The bundle at ``path`` (default: the models folder's), checked; builds the default one if missing.

    Raises BundleError naming the command that fixes it. Cheap after the first call in a process.
    """
    bundle, default = _locate(path, build)
    return _LOADED.get(_key(bundle)) or _check(bundle, bundle.read_bytes(), default)


def read_bundle(path: Optional[Union[str, Path]] = None, build: bool = True) -> Tuple[BundleInfo, bytes]:
    """``load_bundle`` and the bundle's bytes, read once: the bytes checked are the bytes a graph runs."""
    bundle, default = _locate(path, build)
    data = bundle.read_bytes()
    return _check(bundle, data, default), data


def _locate(path: Optional[Union[str, Path]], build: bool) -> Tuple[Path, bool]:
    default = path is None
    bundle = default_bundle_path() if path is None else Path(path).expanduser()
    if default and build:
        _build_once(bundle)
    if not bundle.is_file():
        fix = "`phoenix-models build`" if default else f"`phoenix-models build --out {bundle}`"
        raise BundleError(f"no model bundle at {bundle}: {fix} writes it.")
    return bundle, default


def _key(bundle: Path) -> Tuple[str, int, int]:
    stat = bundle.stat()
    return str(bundle.resolve()), stat.st_size, stat.st_mtime_ns


def _check(bundle: Path, data: bytes, default: bool) -> BundleInfo:
    """The bundle's digest against its manifest, and its contents; remembered for this process."""
    digest = _sha256(data)
    manifest = _read_manifest(bundle)
    if manifest is not None and manifest.get("sha256") != digest:
        raise BundleError(
            f"the model bundle {bundle} is damaged: its SHA-256 is {digest[:16]}..., its manifest says "
            f"{str(manifest.get('sha256'))[:16]}... Rebuild it: `phoenix-models build --force"
            f"{'' if default else ' --out ' + str(bundle)}`.")
    if manifest is None and default:
        raise BundleError(f"the model bundle {bundle} has no manifest ({manifest_path(bundle).name}): "
                          "rebuild it with `phoenix-models build --force`.")
    face_points = inspect_bundle(data, str(bundle), manifest.get("face_points") if manifest else None)
    source = manifest.get("source", "?") if manifest else "user bundle"
    info = BundleInfo(bundle, digest, face_points, source)
    _LOADED[_key(bundle)] = info
    return info


def _read_manifest(bundle: Path) -> Optional[dict]:
    path = manifest_path(bundle)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise BundleError(f"{path} is unreadable ({exc}): rebuild with `phoenix-models build --force`.") from exc


def _build_once(bundle: Path) -> None:
    """Build the default bundle if it is missing or of an older format; one process builds, others wait."""
    def current() -> bool:
        manifest = _read_manifest(bundle) if bundle.is_file() else None
        return manifest is not None and manifest.get("format") == BUILD_FORMAT

    if current():
        return
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with open(bundle.parent / ".build.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not current():
            log.warning("building the MediaPipe model bundle %s, once (the tasks backend needs it; "
                        "`phoenix-models build` does the same)", bundle)
            build_bundle(bundle)
