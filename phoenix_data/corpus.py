"""Which PHOENIX releases exist on disk, and their corpus CSVs as :class:`Sample` records.

No torch here, and no frame folder is touched: a corpus whose frames are not (yet) on disk reads
fine; a missing frame folder is that sample's problem when its frames are read.
"""
from __future__ import annotations

import codecs
import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple, Union

SPLITS: Tuple[str, ...] = ("train", "dev", "test")
FRAMES_SUBDIR = PurePosixPath("features/fullFrame-210x260px")
# Where a release is looked for: the root, its subfolders, theirs (root, archive folder, its parent).
SCAN_DEPTH = 2
# A folder with more subfolders than this is not searched further (a frame folder, a big data disk).
MAX_SCANNED_SUBFOLDERS = 64
# A release's own subfolders hold no release.
_NOT_RELEASE_FOLDERS = frozenset({"annotations", "features", "evaluation", "models"})


class CorpusError(ValueError):
    """A release tree or corpus CSV that cannot be read as PHOENIX."""


@dataclass(frozen=True)
class ReleaseLayout:
    """Where one release keeps its annotations and frames."""

    name: str
    archive: str  # the folder the release ships in
    csv_pattern: str  # relative to the release folder, ``{split}`` filled in
    header: Tuple[str, ...]
    id_field: str
    folder_field: str
    signer_field: str
    gloss_field: str
    translation_field: Optional[str]
    # 2014-T's CSV says ``<name>/1/*.png`` but its frames sit directly under ``<name>/``.
    drop_folder_one: bool


_2014_HEADER = ("id", "folder", "signer", "annotation")
_2014T_HEADER = ("name", "video", "start", "end", "speaker", "orth", "translation")

RELEASES: Dict[str, ReleaseLayout] = {
    layout.name: layout
    for layout in (
        ReleaseLayout("phoenix-2014-multisigner", "phoenix2014-release",
                      "annotations/manual/{split}.corpus.csv", _2014_HEADER,
                      "id", "folder", "signer", "annotation", None, False),
        ReleaseLayout("phoenix-2014-signerindependent-SI5", "phoenix2014-release",
                      "annotations/manual/{split}.SI5.corpus.csv", _2014_HEADER,
                      "id", "folder", "signer", "annotation", None, False),
        ReleaseLayout("PHOENIX-2014-T", "PHOENIX-2014-T-release-v3",
                      "annotations/manual/PHOENIX-2014-T.{split}.corpus.csv", _2014T_HEADER,
                      "name", "video", "speaker", "orth", "translation", True),
    )
}

# Short names a user may pass as ``release=``.
RELEASE_ALIASES: Dict[str, str] = {
    "multisigner": "phoenix-2014-multisigner",
    "2014": "phoenix-2014-multisigner",
    "si5": "phoenix-2014-signerindependent-SI5",
    "2014-t": "PHOENIX-2014-T",
    "2014t": "PHOENIX-2014-T",
}


@dataclass(frozen=True)
class Release:
    """One release found on disk."""

    layout: ReleaseLayout
    root: Path  # the release folder, e.g. .../phoenix2014-release/phoenix-2014-multisigner

    @property
    def name(self) -> str:
        return self.layout.name

    def csv_path(self, split: str) -> Path:
        return self.root / self.layout.csv_pattern.format(split=split)

    def split_dir(self, split: str) -> Path:
        return self.root / FRAMES_SUBDIR / split


@dataclass(frozen=True)
class Sample:
    """One video of a split: where its frames are and what is signed in it."""

    id: str
    signer: str
    glosses: Tuple[str, ...]
    frames_dir: Path
    translation: Optional[str]
    split: str
    release: str

    @property
    def key(self) -> str:
        """The name of this sample in a cache: unique across releases and splits."""
        return f"{self.release}/{self.split}/{self.id}"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise CorpusError(f"Unknown split {split!r}; expected one of {', '.join(map(repr, SPLITS))}.")
    return split


def _has_annotations(folder: Path, layout: ReleaseLayout) -> bool:
    return any((folder / layout.csv_pattern.format(split=s)).is_file() for s in SPLITS)


def _releases_in(folder: Path) -> List[Release]:
    """The releases whose annotation files ``folder`` holds (a folder may be named anything)."""
    return [Release(layout, folder) for layout in RELEASES.values() if _has_annotations(folder, layout)]


def _subfolders(folder: Path) -> List[Path]:
    """``folder``'s subfolders, sorted; none for a folder too big to be a release or an archive
    folder (a split's frame folder holds thousands: never walked)."""
    try:
        with os.scandir(folder) as entries:
            names: List[str] = []
            for entry in entries:
                if len(names) > MAX_SCANNED_SUBFOLDERS:
                    return []
                if entry.is_dir() and not entry.name.startswith("."):
                    names.append(entry.name)
    except OSError:
        return []
    return [folder / name for name in sorted(names)]


def _candidates(root: Path, wanted: Optional[str] = None) -> List[Release]:
    """Releases at ``root``, else where the archives put them, else in any subfolder of ``root``
    or of its subfolders (a renamed copy: a release is known by its annotation files).

    The usual places are tried first without listing any folder.
    """
    found = _releases_in(root)
    if found:
        return found
    usual = {root / layout.name for layout in RELEASES.values()}
    usual |= {root / layout.archive / layout.name for layout in RELEASES.values()}
    found = [release for folder in sorted(usual) for release in _releases_in(folder)]
    if found and (wanted is None or any(r.name == wanted for r in found)):
        return found
    level = [root]
    for _ in range(SCAN_DEPTH):
        level = [sub for folder in level for sub in _subfolders(folder) if sub.name not in _NOT_RELEASE_FOLDERS]
        found = [release for folder in level for release in _releases_in(folder)]
        if found:
            break
    return found


def resolve_release_name(release: str) -> str:
    if release in RELEASES:
        return release
    name = RELEASE_ALIASES.get(release.lower())
    if name is None:
        valid = ", ".join(map(repr, list(RELEASES) + sorted(RELEASE_ALIASES)))
        raise CorpusError(f"Unknown release {release!r}; expected one of {valid}.")
    return name


def find_release(root: Union[str, Path], release: Optional[str] = None) -> Release:
    """The release under ``root``: the release folder, the folder holding it (the archive folder)
    or the one above that. Releases are known by their annotation files
    (``annotations/manual/<split>.corpus.csv`` for multisigner, ``<split>.SI5.corpus.csv`` for SI5,
    ``PHOENIX-2014-T.<split>.corpus.csv`` for 2014-T), whatever their folders are called.

    ``release`` picks one where ``root`` holds several (multisigner and SI5 sit side by side).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CorpusError(f"PHOENIX root {str(root)!r} is not a directory; pass the release folder "
                          "(e.g. .../phoenix2014-release/phoenix-2014-multisigner) or its archive folder.")
    wanted = resolve_release_name(release) if release is not None else None
    found = _candidates(root, wanted)
    if wanted is not None:
        found = [r for r in found if r.name == wanted]
        if not found:
            raise CorpusError(f"Release {wanted!r} not found under {str(root)!r}; expected a folder holding "
                              f"{RELEASES[wanted].csv_pattern.format(split='<split>')} there.")
    if not found:
        raise CorpusError(
            f"No PHOENIX release found under {str(root)!r}: expected "
            "annotations/manual/*.corpus.csv (2014, SI5) or annotations/manual/PHOENIX-2014-T.*.corpus.csv "
            "(2014-T) in a release folder (e.g. phoenix-2014-multisigner, phoenix-2014-signerindependent-SI5, "
            "PHOENIX-2014-T) at it or up to two folders below it.")
    if len(found) > 1:
        names = ", ".join(repr(r.name) for r in found)
        raise CorpusError(f"{str(root)!r} holds several releases ({names}); pick one with release= (--release).")
    return found[0]


def read_corpus(root: Union[str, Path], split: str, release: Optional[str] = None) -> List[Sample]:
    """The samples of ``split``, in CSV order.

    Example::

        samples = read_corpus("/data/phoenix2014-release", "dev", release="multisigner")
        samples[0].glosses   # ('ICH', 'OSTERN', ...)
    """
    check_split(split)
    rel = find_release(root, release)
    return read_release_split(rel, split)


def read_release_split(rel: Release, split: str) -> List[Sample]:
    check_split(split)
    path = rel.csv_path(split)
    if not path.is_file():
        raise CorpusError(f"Corpus file for split {split!r} of {rel.name} not found: {path}.")
    lines = io.StringIO(_read_utf8(path), newline=None)  # CRLF and LF alike
    reader = csv.reader(lines, delimiter="|", quoting=csv.QUOTE_NONE)
    header = tuple(next(reader, ()))
    if header != rel.layout.header:
        raise CorpusError(f"{path}:1: unknown header {'|'.join(header)!r}; "
                          f"expected {'|'.join(rel.layout.header)!r} for {rel.name}.")
    samples: List[Sample] = []
    lines_of: Dict[str, int] = {}  # id -> its line
    for row in reader:
        if not row:
            continue  # a trailing blank line
        sample = _row_to_sample(rel, split, path, reader.line_num, row)
        if sample.id in lines_of:  # both rows would share one cache record
            raise CorpusError(f"{path}:{reader.line_num}: id {sample.id!r} repeats line {lines_of[sample.id]}; "
                              "each row needs an id of its own: remove or rename one of them.")
        lines_of[sample.id] = reader.line_num
        samples.append(sample)
    return samples


def _read_utf8(path: Path) -> str:
    """The text of a corpus file (UTF-8, a BOM allowed); CorpusError naming line and byte otherwise."""
    data = path.read_bytes()
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise CorpusError(f"{path}:{line}: not UTF-8: byte {data[offset]:#04x} at offset {offset} ({exc.reason}). "
                          "PHOENIX corpus files are UTF-8; convert this one (e.g. iconv -f latin1 -t utf-8) "
                          "or restore the original.") from None


def _row_to_sample(rel: Release, split: str, path: Path, line: int, row: List[str]) -> Sample:
    layout = rel.layout
    if len(row) != len(layout.header):
        raise CorpusError(f"{path}:{line}: {len(row)} fields; expected {len(layout.header)} "
                          f"({'|'.join(layout.header)}).")
    fields = dict(zip(layout.header, row))
    sample_id = fields[layout.id_field].strip()
    if not sample_id:
        raise CorpusError(f"{path}:{line}: empty {layout.id_field!r} field.")
    return Sample(
        id=sample_id,
        signer=fields[layout.signer_field].strip(),
        glosses=tuple(fields[layout.gloss_field].split()),
        frames_dir=_frames_dir(rel, split, fields[layout.folder_field], path, line),
        translation=fields[layout.translation_field].strip() if layout.translation_field else None,
        split=split,
        release=rel.name,
    )


def _frames_dir(rel: Release, split: str, folder: str, path: Path, line: int) -> Path:
    """The frame folder a CSV folder glob names (``<id>/1/*.png``), kept inside the release."""
    glob = PurePosixPath(folder.strip().replace("\\", "/"))
    parts = glob.parts[:-1] if glob.parts and "*" in glob.parts[-1] else glob.parts
    if not parts or glob.is_absolute() or any(p in ("..", ".") for p in parts) or ":" in folder:
        raise CorpusError(f"{path}:{line}: folder {folder!r} leaves the release's frame folder; "
                          f"expected a relative path like '<id>/1/*.png'.")
    if rel.layout.drop_folder_one and len(parts) > 1 and parts[-1] == "1":
        parts = parts[:-1]
    return rel.split_dir(split).joinpath(*parts)
