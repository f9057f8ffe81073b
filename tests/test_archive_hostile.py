"""Hostile and damaged data archives (issue 22): links, loops, bombs, truncation, bad CRCs and races."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import signal
import stat
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from fakedetect.cli import main
from fakedetect.data import archive
from fakedetect.data.archive import resolve_data
from fakedetect.errors import ConfigError, DataError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def cache(tmp_path, monkeypatch):
    for env in ("FAKEDETECT_ARCHIVE_MAX_BYTES", "FAKEDETECT_ARCHIVE_MAX_MEMBERS"):
        monkeypatch.delenv(env, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def written(monkeypatch):
    """Files (path -> size) found in each folder the extraction cleaned up: what it wrote before failing."""
    seen: dict[str, int] = {}
    rmtree = shutil.rmtree

    def spy(path, *a, **k):
        for root, _dirs, files in os.walk(path):
            for f in files:
                seen[os.path.join(root, f)] = os.lstat(os.path.join(root, f)).st_size
        return rmtree(path, *a, **k)

    monkeypatch.setattr(shutil, "rmtree", spy)
    return seen


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as t:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = PNG) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED, attrs: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            info.external_attr = (attrs or {}).get(name, (stat.S_IFREG | 0o644) << 16)
            z.writestr(info, data)
    return path


def _nothing_written(cache: Path, written: dict) -> None:
    assert not written, f"written before the refusal: {written}"
    assert not cache.exists() or list(cache.iterdir()) == []


# -- links, devices and paths are refused before anything is written --------------------------------------------------

@pytest.mark.parametrize("member", [
    _special("train/real/link.png", tarfile.SYMTYPE, "a.png"),
    _special("train/real/hard.png", tarfile.LNKTYPE, "train/real/a.png"),
    _special("train/real/fifo.png", tarfile.FIFOTYPE),
    _special("train/real/tty.png", tarfile.CHRTYPE),
    _special("train/real/disk.png", tarfile.BLKTYPE),
], ids=["symlink", "hardlink", "fifo", "chardev", "blockdev"])
def test_a_tar_with_a_link_or_device_member_is_refused(tmp_path, cache, written, member):
    arc = _tar(tmp_path / "d.tar.gz", [_file("train/real/a.png"), member, _file("train/fake/b.png")], "w:gz")
    with pytest.raises(DataError, match="refusing archive member") as e:
        resolve_data(arc, cache=cache)
    assert member[0].name in str(e.value)
    _nothing_written(cache, written)


def test_a_link_pointing_outside_writes_nothing_outside(tmp_path, cache, written):
    outside = tmp_path / "outside.txt"
    arc = _tar(tmp_path / "d.tar", [_special("evil", tarfile.SYMTYPE, str(outside)),
                                    _file("evil", b"overwritten")])
    with pytest.raises(DataError, match="'evil'"):
        resolve_data(arc, cache=cache)
    assert not outside.exists()
    _nothing_written(cache, written)


@pytest.mark.parametrize("name", ["/abs/a.png", "../up/a.png", "train/../../a.png"])
def test_members_outside_the_folder_are_refused_in_both_formats(tmp_path, cache, written, name):
    tar = _tar(tmp_path / "d.tar", [_file("train/real/ok.png"), _file(name)])
    with pytest.raises(DataError, match="outside the folder"):
        resolve_data(tar, cache=cache)
    z = _zip(tmp_path / "d.zip", {"train/real/ok.png": PNG, name: PNG})
    with pytest.raises(DataError, match="outside the folder"):
        resolve_data(z, cache=cache)
    _nothing_written(cache, written)


@pytest.mark.parametrize("mode", [stat.S_IFLNK | 0o777, stat.S_IFIFO | 0o644, stat.S_IFCHR | 0o644])
def test_a_zip_with_a_symlink_or_special_member_is_refused(tmp_path, cache, written, mode):
    arc = _zip(tmp_path / "d.zip", {"train/real/a.png": PNG, "train/real/link.png": b"a.png"},
               attrs={"train/real/link.png": mode << 16})
    with pytest.raises(DataError, match="'train/real/link.png'"):
        resolve_data(arc, cache=cache)
    _nothing_written(cache, written)


# -- CVE-2025-8194: a tar whose member offsets loop -------------------------------------------------------------------

def _looping_tar(path: Path) -> Path:
    """a.png, b.png, then a GNU sparse header whose negative size sends the reader back to b.png, forever."""
    buf = io.BytesIO()
    for name in ("a.png", "b.png"):
        buf.write(tarfile.TarInfo(name).tobuf(tarfile.GNU_FORMAT))
    sparse = tarfile.TarInfo("c.png")
    sparse.type, sparse.size = tarfile.GNUTYPE_SPARSE, -1024
    buf.write(sparse.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024)
    path.write_bytes(buf.getvalue())
    return path


def test_a_tar_whose_offsets_loop_is_refused(tmp_path, cache, written):
    def hang(*_):
        raise TimeoutError("the looping tar was read forever")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(5)
    try:
        with pytest.raises(DataError, match="loop"):
            resolve_data(_looping_tar(tmp_path / "loop.tar"), cache=cache)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    _nothing_written(cache, written)


def test_the_offset_guard_wants_strictly_increasing_offsets():
    check = archive.check_tar_offset
    assert check(Path("x.tar"), SimpleNamespace(name="a", offset=0), -1) == 0
    assert check(Path("x.tar"), SimpleNamespace(name="b", offset=1024), 0) == 1024
    for offset in (1024, 512):
        with pytest.raises(DataError, match="'c' at offset"):
            check(Path("x.tar"), SimpleNamespace(name="c", offset=offset), 1024)


# -- bounds on members and bytes --------------------------------------------------------------------------------------

def test_a_tar_with_too_many_members_is_refused(tmp_path, cache, written, monkeypatch):
    arc = _tar(tmp_path / "d.tar.gz", [_file(f"train/real/{i}.png") for i in range(5)], "w:gz")
    monkeypatch.setenv("FAKEDETECT_ARCHIVE_MAX_MEMBERS", "4")  # the folders are members too
    with pytest.raises(DataError, match="more than 4 members.*FAKEDETECT_ARCHIVE_MAX_MEMBERS"):
        resolve_data(arc, cache=cache)
    _nothing_written(cache, written)
    monkeypatch.setenv("FAKEDETECT_ARCHIVE_MAX_MEMBERS", "5")
    assert len(list((resolve_data(arc, cache=cache) / "train" / "real").iterdir())) == 5


def test_a_tar_bomb_is_refused_at_its_header(tmp_path, cache, written, monkeypatch):
    big = tarfile.TarInfo("train/real/huge.png")
    big.size = 32 << 20
    with tarfile.open(tmp_path / "bomb.tar.gz", "w:gz") as t:
        t.addfile(big, io.BytesIO(bytes(big.size)))
    monkeypatch.setenv("FAKEDETECT_ARCHIVE_MAX_BYTES", str(1 << 20))
    inflated = []
    read = gzip._GzipReader.read

    def counted(self, n=-1):
        data = read(self, n)
        inflated.append(len(data))
        return data

    monkeypatch.setattr(gzip._GzipReader, "read", counted)
    with pytest.raises(DataError, match="more than 1,048,576 bytes.*'train/real/huge.png'.*ARCHIVE_MAX_BYTES"):
        resolve_data(tmp_path / "bomb.tar.gz", cache=cache)
    assert sum(inflated) < 1 << 20  # stopped at the header, not after inflating 32 MiB
    _nothing_written(cache, written)


def test_limits_as_keyword_arguments_and_a_bad_variable(tmp_path, cache, written, monkeypatch):
    arc = _zip(tmp_path / "d.zip", {f"real/{i}.png": PNG for i in range(3)})
    with pytest.raises(DataError, match="more than 2 members"):
        resolve_data(arc, cache=cache, max_members=2)
    with pytest.raises(DataError, match="more than 2,000 bytes"):
        resolve_data(arc, cache=cache, max_bytes=2000)
    _nothing_written(cache, written)
    monkeypatch.setenv("FAKEDETECT_ARCHIVE_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="FAKEDETECT_ARCHIVE_MAX_BYTES"):
        resolve_data(arc, cache=cache)


def test_a_zip_with_too_many_members_or_bytes_is_refused(tmp_path, cache, written, monkeypatch):
    arc = _zip(tmp_path / "d.zip", {f"real/{i}.png": PNG for i in range(3)})
    monkeypatch.setenv("FAKEDETECT_ARCHIVE_MAX_MEMBERS", "2")
    with pytest.raises(DataError, match="FAKEDETECT_ARCHIVE_MAX_MEMBERS"):
        resolve_data(arc, cache=cache)
    monkeypatch.delenv("FAKEDETECT_ARCHIVE_MAX_MEMBERS")
    monkeypatch.setenv("FAKEDETECT_ARCHIVE_MAX_BYTES", str(2 * len(PNG)))
    with pytest.raises(DataError, match="'real/2.png'.*FAKEDETECT_ARCHIVE_MAX_BYTES"):
        resolve_data(arc, cache=cache)
    _nothing_written(cache, written)


def _lie_about_size(path: Path, declared: int) -> None:
    """Rewrites the uncompressed size of a one-member zip in its local and central headers."""
    raw = bytearray(path.read_bytes())
    local, central = raw.index(b"PK\x03\x04"), raw.index(b"PK\x01\x02")
    raw[local + 22:local + 26] = declared.to_bytes(4, "little")
    raw[central + 24:central + 28] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(raw))


def test_a_zip_whose_declared_size_lies_writes_no_more_than_the_limit(tmp_path, cache, written, monkeypatch):
    arc = _zip(tmp_path / "d.zip", {"real/big.png": bytes(1 << 20)})
    _lie_about_size(arc, 100)
    assert zipfile.ZipFile(arc).infolist()[0].file_size == 100
    monkeypatch.setenv("FAKEDETECT_ARCHIVE_MAX_BYTES", "4096")
    with pytest.raises(DataError, match=str(arc)):
        resolve_data(arc, cache=cache)
    assert sum(written.values()) <= 4096
    assert not cache.exists() or list(cache.iterdir()) == []


def test_the_zip_copy_counts_the_bytes_it_reads():
    budget = archive._Budget(Path("x.zip"), max_bytes=10, max_members=1)
    out = io.BytesIO()
    with pytest.raises(DataError, match="more than 10 bytes.*'m'"):
        archive.copy_bounded(io.BytesIO(bytes(25)), out, "m", budget, chunk=4)
    assert len(out.getvalue()) <= 10


# -- damaged archives and races ---------------------------------------------------------------------------------------

def _valid_tgz(path: Path) -> Path:
    rng = __import__("random").Random(0)
    return _tar(path, [_file(f"train/{c}/{i}.png", rng.randbytes(20_000)) for c in ("real", "fake") for i in range(4)],
                "w:gz")


def test_a_truncated_tar_gz_is_a_data_error(tmp_path, cache, written):
    arc = _valid_tgz(tmp_path / "d.tar.gz")
    arc.write_bytes(arc.read_bytes()[: arc.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as e:
        resolve_data(arc, cache=cache)
    assert str(arc) in str(e.value)
    _nothing_written(cache, written)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_zip_with_a_bad_crc_is_a_data_error(tmp_path, cache, compression):
    arc = _zip(tmp_path / "d.zip", {"real/a.png": __import__("random").Random(1).randbytes(5000)}, compression)
    raw = bytearray(arc.read_bytes())
    raw[30 + len("real/a.png") + 2000] ^= 0xFF  # a byte of the member's data, after the local header
    arc.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="truncated or corrupt"):
        resolve_data(arc, cache=cache)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_the_cli_shows_a_damaged_archive_as_one_line(tmp_path):
    arc = _valid_tgz(tmp_path / "d.tar.gz")
    arc.write_bytes(arc.read_bytes()[: arc.stat().st_size // 2])
    res = CliRunner().invoke(main, ["inspect", str(arc)])
    assert res.exit_code == 1, res.output
    assert "truncated or corrupt" in res.output and "bug" not in res.output and "Traceback" not in res.output


def test_another_process_finishing_first_is_not_an_error(tmp_path, cache, monkeypatch):
    arc = _valid_tgz(tmp_path / "d.tar.gz")
    dest = cache / f"d-{archive.archive_fingerprint(arc)}"
    extractall = tarfile.TarFile.extractall

    def racing(self, *a, **k):  # the other process renames its copy into place while we extract
        extractall(self, *a, **k)
        (dest / "train").mkdir(parents=True)
        (dest / "train" / "theirs").write_text("done")

    monkeypatch.setattr(tarfile.TarFile, "extractall", racing)
    assert resolve_data(arc, cache=cache) == dest
    assert (dest / "train" / "theirs").is_file()
    assert [p.name for p in cache.iterdir()] == [dest.name]


def test_a_second_extraction_waits_for_the_first(tmp_path, cache, monkeypatch):
    fcntl = pytest.importorskip("fcntl")
    arc = _valid_tgz(tmp_path / "d.tar.gz")
    dest = cache / f"d-{archive.archive_fingerprint(arc)}"
    calls = []
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda *a, **k: calls.append(a))
    cache.mkdir()
    result = {}
    with open(cache / f".{dest.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first process is extracting
        waiter = threading.Thread(target=lambda: result.update(out=resolve_data(arc, cache=cache)))
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and not calls
        (dest / "train").mkdir(parents=True)  # ... and finishes
        fcntl.flock(lock, fcntl.LOCK_UN)
    waiter.join(10)
    assert result["out"] == dest and not calls


# -- valid archives are unchanged -------------------------------------------------------------------------------------

def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_valid_archives_extract_as_before(tmp_path, cache):
    src = tmp_path / "src"
    for name in ("train/real/a b (1).png", "train/fake/c.png", "test/real/d.png", "test/fake/e.png"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(PNG + name.encode())
    with tarfile.open(tmp_path / "d.tar.gz", "w:gz") as t:
        t.add(src, arcname="d")
    shutil.make_archive(str(tmp_path / "z"), "zip", src.parent, "src")
    out = resolve_data(tmp_path / "d.tar.gz", cache=cache)
    assert _tree(out / "d") == _tree(src)
    assert resolve_data(tmp_path / "d.tar.gz", cache=cache) == out
    zout = resolve_data(tmp_path / "z.zip", cache=cache)
    assert _tree(zout / "src") == _tree(src)
    assert sorted(p.name for p in cache.iterdir()) == sorted([out.name, zout.name])  # no lock or temporary left
