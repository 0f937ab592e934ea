"""read_corpus / find_release on the real release layouts (excerpts in tests/fixtures/corpus, full
files in shared/phoenix-real). Fixtures and layout helpers: the "Corpus fixtures" section of conftest.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CORPUS_LAYOUT, corpus_csv_path, corpus_release_dir

from phoenix_data.corpus import CorpusError, Sample, find_release, read_corpus, resolve_release_name

MS = "phoenix-2014-multisigner"
SI5 = "phoenix-2014-signerindependent-SI5"
T = "PHOENIX-2014-T"
ALL_RELEASES = (MS, SI5, T)
FRAMES = Path("features") / "fullFrame-210x260px"

# (release, split) of every excerpt in tests/fixtures/corpus (SI5 has no dev: see its README).
EXCERPTS = [(MS, "train"), (MS, "dev"), (MS, "test"), (SI5, "train"), (SI5, "test"),
            (T, "train"), (T, "dev"), (T, "test")]

ROW_2014 = "{id}|{id}/1/*.png|Signer01|A B"
ROW_2014T = "{id}|{id}/1/*.png|-1|-1|Signer01|A B|a b"


def _excerpt_ids(path: Path):
    """First field of every row after the header, straight from the bytes."""
    text = path.read_bytes().decode("utf-8")
    return [line.split("|", 1)[0] for line in text.splitlines()[1:] if line]


def _frames_dir(base: Path, release: str, split: str, *parts: str) -> Path:
    return corpus_release_dir(base, release).joinpath(FRAMES, split, *parts)


def _copy_archive(corpus_fixtures: Path, dest: Path, release: str) -> Path:
    """Copy only ``release``'s folder of the excerpts to ``dest/<archive>/<release>``."""
    target = corpus_release_dir(dest, release)
    shutil.copytree(corpus_release_dir(corpus_fixtures, release), target)
    return target


# ------------------------------------------------------------------------------ records

@pytest.mark.parametrize("release,split", EXCERPTS)
def test_excerpts_read_in_csv_order_with_all_fields(corpus_fixtures, release, split):
    samples = read_corpus(corpus_fixtures, split, release=release)
    path = corpus_csv_path(corpus_fixtures, release, split)
    assert [s.id for s in samples] == _excerpt_ids(path)
    assert len(samples) == 5
    for s in samples:
        assert isinstance(s, Sample)
        assert s.split == split and s.release == release
        assert s.signer.startswith("Signer") and s.signer == s.signer.strip()
        assert isinstance(s.glosses, tuple) and s.glosses
        assert all(isinstance(g, str) and g and g == g.strip() and " " not in g for g in s.glosses)
        if release == T:
            assert isinstance(s.translation, str) and s.translation
            assert s.translation == s.translation.strip()
            assert s.frames_dir == _frames_dir(corpus_fixtures, T, split, s.id)
        else:
            assert s.translation is None
            assert s.frames_dir == _frames_dir(corpus_fixtures, release, split, s.id, "1")


def test_glosses_split_on_runs_of_whitespace_leading_and_trailing(corpus_fixtures):
    si5 = {s.id: s for s in read_corpus(corpus_fixtures, "test", release="si5")}
    # line 5: " BISSCHEN REGEN SCHNEE SCHNEIEN MORGEN IX  MEISTENS WOLKE" (leading and double space)
    assert si5["05March_2011_Saturday_tagesschau_default-6"].glosses == (
        "BISSCHEN", "REGEN", "SCHNEE", "SCHNEIEN", "MORGEN", "IX", "MEISTENS", "WOLKE")
    # line 3: "WIND  MAESSIG ..." (double space)
    assert si5["01December_2011_Thursday_tagesschau_default-6"].glosses == (
        "WIND", "MAESSIG", "FRISCH", "STARK", "STURM", "BERG", "SCHWER", "STURM", "SUEDOST",
        "SCHWACH", "WIND")
    # line 4: trailing space
    assert si5["01November_2010_Monday_tagesschau_default-6"].glosses[-2:] == ("LANG", "BLEIBEN")
    dev = read_corpus(corpus_fixtures, "dev", release="multisigner")
    assert dev[-1].id == "03September_2010_Friday_tagesschau_default-2"
    assert dev[-1].signer == "Signer05"
    assert dev[-1].glosses == (
        "__ON__", "KUEHL", "KOMMEN", "TEMPERATUR", "SAMSTAG", "SONNTAG", "IX", "GLEICH")


def test_2014_sample_fields_exactly(corpus_fixtures):
    first = read_corpus(corpus_fixtures, "train", release=MS)[0]
    assert first == Sample(
        id="01April_2010_Thursday_heute_default-0",
        signer="Signer04",
        glosses=("__ON__", "LIEB", "ZUSCHAUER", "ABEND", "WINTER", "GESTERN", "loc-NORD",
                 "SCHOTTLAND", "loc-REGION", "UEBERSCHWEMMUNG", "AMERIKA", "IX"),
        frames_dir=corpus_fixtures / "phoenix2014-release" / MS / "features" / "fullFrame-210x260px"
        / "train" / "01April_2010_Thursday_heute_default-0" / "1",
        translation=None,
        split="train",
        release=MS,
    )
    assert first.key == f"{MS}/train/01April_2010_Thursday_heute_default-0"


def test_2014t_sample_fields_exactly_umlauts_and_no_folder_one(corpus_fixtures):
    last = read_corpus(corpus_fixtures, "train", release="2014-T")[-1]
    assert last == Sample(
        id="11August_2010_Wednesday_tagesschau-7",
        signer="Signer08",
        glosses=("WOLKE", "LOCH", "SPEZIELL", "NORDWEST"),
        # the CSV says "<name>/1/*.png"; on disk the frames sit directly in <name>/
        frames_dir=corpus_fixtures / "PHOENIX-2014-T-release-v3" / T / "features"
        / "fullFrame-210x260px" / "train" / "11August_2010_Wednesday_tagesschau-7",
        translation="größere wolkenlücken finden sich vor allem im nordwesten",
        split="train",
        release=T,
    )
    # The CRLF test excerpt: no "\r" left on the translation.
    test = read_corpus(corpus_fixtures, "test", release=T)
    assert test[1].id == "25October_2010_Monday_tagesschau-24"
    assert test[1].translation == ("am donnerstag regen in der nordhälfte in der südhälfte mal sonne "
                                   "mal wolken ähnliches wetter dann auch am freitag")
    assert test[1].frames_dir == _frames_dir(corpus_fixtures, T, "test",
                                             "25October_2010_Monday_tagesschau-24")


def test_2014t_video_column_without_folder_one_gives_same_frames_dir(write_corpus_csv, tmp_path):
    name = "11August_2010_Wednesday_tagesschau-2"
    row = "|-1|-1|Signer08|DRUCK TIEF KOMMEN|tiefer luftdruck bestimmt in den nächsten tagen unser wetter"
    write_corpus_csv(T, "dev", [f"{name}|{name}/1/*.png{row}"])
    write_corpus_csv(T, "test", [f"{name}|{name}/*.png{row}"])
    with_one = read_corpus(tmp_path, "dev")[0]
    without_one = read_corpus(tmp_path, "test")[0]
    assert with_one.frames_dir == _frames_dir(tmp_path, T, "dev", name)
    assert without_one.frames_dir == _frames_dir(tmp_path, T, "test", name)
    assert (with_one.id, with_one.signer, with_one.glosses, with_one.translation) == (
        without_one.id, without_one.signer, without_one.glosses, without_one.translation)


def test_2014_keeps_folder_one(write_corpus_csv, tmp_path):
    write_corpus_csv(MS, "dev", [ROW_2014.format(id="x-1")])
    assert read_corpus(tmp_path, "dev")[0].frames_dir == _frames_dir(tmp_path, MS, "dev", "x-1", "1")


# --------------------------------------------------------------------------- finding the release

def test_root_as_release_folder_archive_root_and_parent(corpus_fixtures, tmp_path):
    release_dir = _copy_archive(corpus_fixtures, tmp_path, T)
    expected = read_corpus(release_dir, "dev")
    assert [s.id for s in expected] == _excerpt_ids(corpus_csv_path(tmp_path, T, "dev"))
    for root in (release_dir, release_dir.parent, tmp_path, str(tmp_path)):
        assert find_release(root).root == release_dir
        assert read_corpus(root, "dev") == expected
    assert expected[0].frames_dir == _frames_dir(tmp_path, T, "dev", expected[0].id)


def test_root_as_2014_release_folder_needs_no_release_name(corpus_fixtures):
    for release in (MS, SI5):
        root = corpus_release_dir(corpus_fixtures, release)
        rel = find_release(root)
        assert (rel.name, rel.root) == (release, root)
        assert read_corpus(root, "test")[0].release == release


def test_root_as_relative_release_folder(corpus_fixtures, monkeypatch):
    """"." inside the release folder (its name is only known once made absolute)."""
    release_dir = corpus_release_dir(corpus_fixtures, MS)
    expected_ids = [s.id for s in read_corpus(release_dir, "dev")]
    monkeypatch.chdir(release_dir)
    assert [s.id for s in read_corpus(".", "dev")] == expected_ids
    assert find_release(".").root == Path(".")
    monkeypatch.chdir(release_dir / "annotations")
    assert [s.id for s in read_corpus("..", "dev")] == expected_ids
    monkeypatch.chdir(release_dir.parent)
    assert find_release(".", "multisigner").root == Path(MS)


@pytest.mark.parametrize("sub", ["phoenix2014-release", "."])
def test_several_releases_without_release_is_an_error_naming_them(corpus_fixtures, sub):
    root = corpus_fixtures / sub
    with pytest.raises(CorpusError) as err:
        read_corpus(root, "train")
    msg = str(err.value)
    assert MS in msg and SI5 in msg and "release=" in msg
    assert (T in msg) == (sub == ".")


@pytest.mark.parametrize("release,expected", [
    (SI5, SI5), ("si5", SI5), ("SI5", SI5),
    (MS, MS), ("multisigner", MS),
    (T, T), ("2014-T", T),
])
def test_release_by_name_and_alias(corpus_fixtures, release, expected):
    assert resolve_release_name(release) == expected
    for root in (corpus_fixtures, corpus_fixtures / CORPUS_LAYOUT[expected][0]):
        rel = find_release(root, release)
        assert (rel.name, rel.root) == (expected, corpus_release_dir(corpus_fixtures, expected))
    samples = read_corpus(corpus_fixtures, "test", release=release)
    assert {s.release for s in samples} == {expected}
    assert [s.id for s in samples] == _excerpt_ids(corpus_csv_path(corpus_fixtures, expected, "test"))


def test_si5_and_multisigner_are_different_files(corpus_fixtures):
    si5 = read_corpus(corpus_fixtures, "test", release="si5")
    ms = read_corpus(corpus_fixtures, "test", release="multisigner")
    assert {s.signer for s in si5} == {"Signer05"}
    assert si5[0].id == "01December_2011_Thursday_heute_default-6"
    assert ms[0].id == "01April_2010_Thursday_heute_default-5"


def test_unknown_release_name_lists_valid_names(corpus_fixtures):
    with pytest.raises(CorpusError) as err:
        read_corpus(corpus_fixtures, "dev", release="phoenix-2015")
    msg = str(err.value)
    assert "'phoenix-2015'" in msg
    for name in (*ALL_RELEASES, "multisigner", "si5"):
        assert repr(name) in msg


def test_named_release_absent_under_root(corpus_fixtures, tmp_path):
    _copy_archive(corpus_fixtures, tmp_path, MS)
    with pytest.raises(CorpusError) as err:
        read_corpus(tmp_path, "test", release="si5")
    msg = str(err.value)
    assert SI5 in msg and str(tmp_path) in msg and "test.SI5.corpus.csv" not in msg
    assert "annotations/manual/<split>.SI5.corpus.csv" in msg


# ----------------------------------------------------------------------------- encodings, frames

def test_crlf_and_lf_read_the_same(corpus_fixtures, tmp_path):
    crlf = corpus_csv_path(corpus_fixtures, T, "test").read_bytes()
    assert b"\r\n" in crlf  # the excerpt really is CRLF (.gitattributes keeps it)
    lf_path = corpus_csv_path(tmp_path, T, "test")
    lf_path.parent.mkdir(parents=True)
    lf_path.write_bytes(crlf.replace(b"\r\n", b"\n"))
    from_crlf = read_corpus(corpus_fixtures, "test", release=T)
    from_lf = read_corpus(tmp_path, "test")
    assert len(from_crlf) == len(from_lf) == 5
    for a, b in zip(from_crlf, from_lf):
        assert (a.id, a.signer, a.glosses, a.translation) == (b.id, b.signer, b.glosses, b.translation)
        assert a.frames_dir.relative_to(corpus_fixtures) == b.frames_dir.relative_to(tmp_path)
        assert not any("\r" in x for x in (a.id, a.signer, a.translation, *a.glosses))


def test_written_crlf_equals_lf(write_corpus_csv, tmp_path):
    rows = [ROW_2014.format(id="a-1"), "b-2|b-2/1/*.png|Signer02| X  Y "]
    write_corpus_csv(MS, "train", rows, newline="\n")
    lf = read_corpus(tmp_path, "train")
    write_corpus_csv(MS, "train", rows, newline="\r\n")
    assert read_corpus(tmp_path, "train") == lf
    assert lf[1].glosses == ("X", "Y") and lf[1].signer == "Signer02"


def test_trailing_blank_line_is_ignored(write_corpus_csv, tmp_path):
    write_corpus_csv(MS, "dev", [ROW_2014.format(id="a-1"), ""])
    write_corpus_csv(MS, "test", [ROW_2014.format(id="a-1"), "", ""], newline="\r\n")
    assert [s.id for s in read_corpus(tmp_path, "dev")] == ["a-1"]
    assert [s.id for s in read_corpus(tmp_path, "test")] == ["a-1"]


def test_utf8_bom_is_accepted(corpus_fixtures, tmp_path):
    source = corpus_csv_path(corpus_fixtures, T, "train")
    path = corpus_csv_path(tmp_path, T, "train")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    with_bom = read_corpus(tmp_path, "train")
    without = read_corpus(corpus_fixtures, "train", release=T)
    assert [(s.id, s.glosses, s.translation) for s in with_bom] == \
        [(s.id, s.glosses, s.translation) for s in without]
    assert with_bom[0].id == "11August_2010_Wednesday_tagesschau-1"


def test_reading_does_not_touch_frame_folders(corpus_fixtures, monkeypatch):
    assert not any(p.name == "features" for p in corpus_fixtures.rglob("*"))  # no frames on disk

    def boom(*args, **kwargs):
        raise AssertionError(f"frame folder listed: {args!r}")

    monkeypatch.setattr(os, "scandir", boom)
    monkeypatch.setattr(os, "listdir", boom)
    monkeypatch.setattr(Path, "iterdir", boom)
    monkeypatch.setattr(Path, "glob", boom)
    monkeypatch.setattr(Path, "rglob", boom)
    for release, split in EXCERPTS:
        samples = read_corpus(corpus_fixtures, split, release=release)
        assert samples and not any(s.frames_dir.exists() for s in samples)


# ----------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("folder", [
    "../../../etc/1/*.png",
    "x-1/../../1/*.png",
    "/etc/x-1/1/*.png",
    "..\\..\\x-1\\1\\*.png",
    "C:\\data\\x-1\\1\\*.png",
    "",
])
def test_folder_leaving_the_release_names_file_and_line(write_corpus_csv, tmp_path, folder):
    path = write_corpus_csv(MS, "dev", [ROW_2014.format(id="ok-1"), ROW_2014.format(id="ok-2"),
                                        f"bad-3|{folder}|Signer01|A B"])
    with pytest.raises(CorpusError) as err:
        read_corpus(tmp_path, "dev")
    assert f"{path}:4:" in str(err.value)


def test_folder_error_line_number_with_crlf_and_bom(write_corpus_csv, tmp_path):
    path = write_corpus_csv(T, "test", ["n-1|../n-1/1/*.png|-1|-1|Signer01|A|a"], newline="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    with pytest.raises(CorpusError, match=r":2: folder '\.\./n-1/1/\*\.png'"):
        read_corpus(tmp_path, "test")


def test_missing_corpus_file_names_its_path(corpus_fixtures):
    root = corpus_release_dir(corpus_fixtures, SI5)
    with pytest.raises(CorpusError) as err:
        read_corpus(root, "dev")
    msg = str(err.value)
    assert str(corpus_csv_path(corpus_fixtures, SI5, "dev")) in msg and "'dev'" in msg


@pytest.mark.parametrize("release,header", [
    (MS, "id|folder|signer|gloss"),
    (MS, "name|video|start|end|speaker|orth|translation"),
    (T, "id|folder|signer|annotation"),
    (T, "Name|Video|Start|End|Speaker|Orth|Translation"),
])
def test_unknown_header_names_file_line_one_and_expected_header(write_corpus_csv, tmp_path,
                                                                 release, header):
    path = write_corpus_csv(release, "train", [], header=header)
    with pytest.raises(CorpusError) as err:
        read_corpus(tmp_path, "train")
    msg = str(err.value)
    assert f"{path}:1:" in msg and header in msg
    assert CORPUS_LAYOUT[release][2] in msg


def test_empty_file_is_an_unknown_header(write_corpus_csv, tmp_path):
    path = write_corpus_csv(MS, "train", [])
    path.write_bytes(b"")
    with pytest.raises(CorpusError, match="1: unknown header"):
        read_corpus(tmp_path, "train")


@pytest.mark.parametrize("release,bad", [
    (MS, "x-3|x-3/1/*.png|Signer01"),
    (MS, "x-3|x-3/1/*.png|Signer01|A B|extra"),
    (T, "x-3|x-3/1/*.png|-1|-1|Signer01|A B"),
    (T, "x-3|x-3/1/*.png|-1|-1|Signer01|A B|a|b"),
])
def test_wrong_number_of_fields_names_file_and_line(write_corpus_csv, tmp_path, release, bad):
    good = (ROW_2014 if release != T else ROW_2014T)
    path = write_corpus_csv(release, "test", [good.format(id="x-1"), good.format(id="x-2"), bad])
    with pytest.raises(CorpusError) as err:
        read_corpus(tmp_path, "test")
    msg = str(err.value)
    assert f"{path}:4:" in msg and "fields" in msg
    # the same rows without the bad one read
    write_corpus_csv(release, "test", [good.format(id="x-1"), good.format(id="x-2")])
    assert [s.id for s in read_corpus(tmp_path, "test")] == ["x-1", "x-2"]


@pytest.mark.parametrize("split", ["val", "validation", "Train", "", "train "])
def test_unknown_split_lists_the_splits(corpus_fixtures, split):
    with pytest.raises(CorpusError) as err:
        read_corpus(corpus_fixtures, split, release=MS)
    msg = str(err.value)
    assert repr(split) in msg
    assert "'train'" in msg and "'dev'" in msg and "'test'" in msg


def test_root_that_is_not_a_directory(corpus_fixtures, tmp_path):
    a_file = corpus_csv_path(corpus_fixtures, MS, "dev")
    missing = tmp_path / "nowhere"
    for root in (a_file, missing):
        with pytest.raises(CorpusError) as err:
            read_corpus(root, "dev")
        assert str(root) in str(err.value) and "not a directory" in str(err.value)


def test_root_without_a_release_says_what_was_expected(tmp_path):
    (tmp_path / "phoenix2014-release" / MS / "annotations" / "manual").mkdir(parents=True)
    (tmp_path / "phoenix2014-release" / MS / "annotations" / "manual" / "train.csv").write_text("x\n")
    with pytest.raises(CorpusError) as err:
        read_corpus(tmp_path, "train")
    msg = str(err.value)
    assert msg.startswith(f"No PHOENIX release found under {str(tmp_path)!r}")
    assert "annotations/manual" in msg and "corpus.csv" in msg
    for name in ALL_RELEASES:
        assert name in msg


# ----------------------------------------------------- acceptance: the full real corpus files

REAL_COUNTS = [
    (MS, "train", 5672), (MS, "dev", 540), (MS, "test", 629),
    (SI5, "train", 4376), (SI5, "test", 180),
    (T, "train", 7096), (T, "dev", 519), (T, "test", 642),
]


@pytest.mark.parametrize("release,split,count", REAL_COUNTS)
def test_real_corpus_files_read_to_the_official_counts(real_corpus_tree, release, split, count):
    samples = read_corpus(real_corpus_tree, split, release=release)
    assert len(samples) == count
    ids = [s.id for s in samples]
    assert len(set(ids)) == len(ids), "duplicate sample ids"
    for s in samples:
        assert s.glosses, s.id
        assert all(g and not any(c.isspace() for c in g) for g in s.glosses), s.id
        assert s.signer.startswith("Signer"), s.id
        assert (s.release, s.split) == (release, split)
        if release == T:
            assert isinstance(s.translation, str) and s.translation, s.id
            assert s.frames_dir == _frames_dir(real_corpus_tree, T, split, s.id)
        else:
            assert s.translation is None
            assert s.frames_dir == _frames_dir(real_corpus_tree, release, split, s.id, "1")
    if release == SI5:
        signers = {s.signer for s in samples}
        assert (signers == {"Signer05"}) if split == "test" else ("Signer05" not in signers)


def test_real_known_rows(real_corpus_tree):
    """Rows the docs call out, with their exact values."""
    train = {s.id: s for s in read_corpus(real_corpus_tree, "train", release="multisigner")}
    assert "13April_2011_Wednesday_tagesschau_default-14" in train  # known broken, but it is read
    test_t = read_corpus(real_corpus_tree, "test", release="2014-T")
    assert test_t[0].id == "25October_2010_Monday_tagesschau-17"
    assert test_t[0].glosses[:3] == ("REGEN", "SCHNEE", "REGION")
    assert any(set("äöüß") & set(s.translation) for s in test_t)


@pytest.mark.parametrize("split,source", [
    # vuducmanh's LF copy without "/1" against the CRLF release copy with "/1"
    ("test", "PHOENIX-2014-T-release-v3/PHOENIX-2014-T/annotations/manual/PHOENIX-2014-T.test.corpus.csv"),
    # ... and against the copy with "/1" put back
    ("dev", "variants/reconstructed_from_vuducmanh1407_with_1_reinserted/PHOENIX-2014-T/annotations/"
            "manual/PHOENIX-2014-T.dev.corpus.csv"),
])
def test_real_2014t_without_folder_one_reads_the_same(phoenix_real_dir, copy_corpus_csv, tmp_path,
                                                      split, source):
    variant = (phoenix_real_dir / "variants" / "vuducmanh1407_video-col-without-1" / T / "annotations"
               / "manual" / f"PHOENIX-2014-T.{split}.corpus.csv")
    assert b"/1/*.png" not in variant.read_bytes()
    copy_corpus_csv(T, split, variant)
    without_one = read_corpus(tmp_path, split)
    reference = tmp_path / "reference"
    path = corpus_csv_path(reference, T, split)
    path.parent.mkdir(parents=True)
    path.write_bytes((phoenix_real_dir / source).read_bytes())
    with_one = read_corpus(reference, split)
    assert len(with_one) == len(without_one) > 500
    for a, b in zip(without_one, with_one):
        assert (a.id, a.signer, a.glosses, a.translation) == (b.id, b.signer, b.glosses, b.translation)
        assert a.frames_dir.relative_to(tmp_path) == b.frames_dir.relative_to(reference)
        assert a.frames_dir.name == a.id


# ------------------------------------------------------------------------------------ imports

@pytest.mark.parametrize("module", ["phoenix_data", "phoenix_data.corpus"])
def test_import_does_not_load_torch(module, tmp_path):
    code = ("import importlib.util, sys\n"
            "assert importlib.util.find_spec('torch') is not None, 'torch not installed: test is void'\n"
            f"import {module}\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------- renamed folders, bad bytes, repeated ids

def _move_release(corpus_fixtures: Path, release: str, dest: Path) -> Path:
    shutil.copytree(corpus_release_dir(corpus_fixtures, release), dest)
    return dest


@pytest.mark.parametrize("release, folder", [(MS, "phoenix2014"), (T, "x"), (SI5, "si5-copy")])
def test_a_renamed_release_folder_is_known_by_its_annotation_files(corpus_fixtures, tmp_path, release, folder):
    root = _move_release(corpus_fixtures, release, tmp_path / "data" / folder)
    expected = read_corpus(corpus_release_dir(corpus_fixtures, release), "test")
    for where in (root, root.parent, tmp_path):  # the release folder, its parent, the one above
        rel = find_release(where)
        assert (rel.name, rel.root) == (release, root)
        samples = read_corpus(where, "test")
        assert [s.id for s in samples] == [s.id for s in expected]
        assert samples[0].frames_dir == root / FRAMES / "test" / expected[0].frames_dir.relative_to(
            corpus_release_dir(corpus_fixtures, release) / FRAMES / "test")


def test_an_archive_of_any_name_holding_renamed_releases(corpus_fixtures, tmp_path):
    archive = tmp_path / "my archive"
    _move_release(corpus_fixtures, MS, archive / "ms")
    _move_release(corpus_fixtures, SI5, archive / "independent")
    with pytest.raises(CorpusError, match="holds several releases") as err:
        find_release(archive)
    assert MS in str(err.value) and SI5 in str(err.value)
    assert find_release(archive, "multisigner").root == archive / "ms"
    assert find_release(tmp_path, "si5").root == archive / "independent"
    assert read_corpus(archive, "test", release="si5")[0].id == "01December_2011_Thursday_heute_default-6"


def test_release_search_stops_two_folders_down_and_skips_big_folders(corpus_fixtures, tmp_path):
    _move_release(corpus_fixtures, MS, tmp_path / "a" / "b" / "c")
    with pytest.raises(CorpusError, match="No PHOENIX release found"):
        find_release(tmp_path)
    assert find_release(tmp_path / "a").root == tmp_path / "a" / "b" / "c"
    frames = tmp_path / "split"
    for i in range(80):  # a split's frame folder: one folder per sample
        (frames / f"sample-{i}" / "1").mkdir(parents=True)
    _move_release(corpus_fixtures, MS, frames / "sample-3" / "1" / "deep")  # not looked for there
    with pytest.raises(CorpusError, match="No PHOENIX release found"):
        find_release(frames)


def test_a_csv_that_is_not_utf8_names_file_line_and_byte(write_corpus_csv):
    path = write_corpus_csv(MS, "dev", [ROW_2014.format(id="x-1"), ROW_2014.format(id="x-2")])
    data = path.read_bytes()
    bad_at = data.index(b"x-2") + 1
    path.write_bytes(data[:bad_at] + b"\xe4" + data[bad_at:])  # Latin-1 'ä'
    with pytest.raises(CorpusError) as err:
        read_corpus(path.parents[2], "dev")
    assert f"{path}:3:" in str(err.value) and f"byte 0xe4 at offset {bad_at}" in str(err.value)
    assert "UTF-8" in str(err.value)


def test_a_repeated_id_names_file_and_both_lines(write_corpus_csv):
    path = write_corpus_csv(T, "dev", [ROW_2014T.format(id="a-1"), ROW_2014T.format(id="b-1"),
                                       ROW_2014T.format(id="a-1")])
    with pytest.raises(CorpusError) as err:
        read_corpus(path.parents[2], "dev")
    assert f"{path}:4: id 'a-1' repeats line 2" in str(err.value)


def _bad_tree(tmp_path: Path, corpus_fixtures: Path, damage: str) -> Path:
    """A multisigner copy whose dev CSV holds a Latin-1 byte ("bytes") or a repeated id ("repeat")."""
    release_dir = _copy_archive(corpus_fixtures, tmp_path / "tree", MS)
    path = release_dir / "annotations" / "manual" / "dev.corpus.csv"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"|", b"\xfc|", 1) if damage == "bytes" else lines[1]
    path.write_bytes(b"".join(lines))
    return release_dir


@pytest.mark.parametrize("damage, says", [("bytes", r"dev.corpus.csv:3: not UTF-8"),
                                          ("repeat", r"dev.corpus.csv:3: id '.*' repeats line 2")])
def test_commands_and_dataset_give_one_line_for_a_bad_csv(corpus_fixtures, tmp_path, capsys, damage, says):
    import re

    from phoenix_data.cli import COMMANDS
    from phoenix_data.dataset import PhoenixLandmarks

    release_dir = _bad_tree(tmp_path, corpus_fixtures, damage)
    with pytest.raises(CorpusError, match=says):
        PhoenixLandmarks(release_dir, "dev", cache=tmp_path / "c")
    for command in ("warm-cache", "dataset"):  # as `python -m phoenix_data.cli COMMAND ...` runs them
        capsys.readouterr()
        try:
            status = COMMANDS[command](["--root", str(release_dir), "--cache", str(tmp_path / "c")])
        except SystemExit as exc:  # argparse's exit: the console script's exit status
            status = exc.code
        err = capsys.readouterr().err
        assert status == 2, (command, err)
        assert re.search(says, err) and err.count("\n") == 1, (command, err)
