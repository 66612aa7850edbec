"""Hostile image archives: unsafe names, links, bombs, caps, corrupt and fake zips.

Every archive is built here, in memory or under tmp_path. Each case either loads (the
hostile members skipped and listed) or raises the reader's TaskError naming the problem;
nothing is ever written outside tmp_path (the zip is read in memory, never extracted).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.tasks import ImageTaskSource, TaskError, clear_image_cache, load_images
from engine.tasks import image_archive as img_mod
from engine.tasks.image_archive import MAX_MEMBER_BYTES, MAX_TOTAL_BYTES


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Loads are cached by content and limits, not by the module caps some tests lower."""
    clear_image_cache()
    yield
    clear_image_cache()


def _png(seed: int, size: int = 12) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.full((size, size), 255, dtype=np.uint8)
    arr[rng.integers(0, size - 2), :] = 0
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


GOOD = [(f"c{c}/{i}.png", _png(10 * c + i)) for c in range(2) for i in range(3)]


def _zip(entries, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """entries: (name or ZipInfo, bytes) pairs."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names
        with zipfile.ZipFile(buf, "w", compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return buf.getvalue()


def _patch(
    data: bytes, member: str, *, file_size: int | None = None, flags: int = 0, method: int | None = None
) -> bytes:
    """Rewrite one member's header fields in both the central directory and its local
    header: a lying uncompressed size, extra flag bits, another compression method."""
    buf = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        pos, count = zf.start_dir, len(zf.infolist())
    for _ in range(count):
        assert buf[pos : pos + 4] == b"PK\x01\x02"
        n, m, k = struct.unpack_from("<HHH", buf, pos + 28)
        local = struct.unpack_from("<I", buf, pos + 42)[0]
        if bytes(buf[pos + 46 : pos + 46 + n]).decode() == member:
            if file_size is not None:
                struct.pack_into("<I", buf, pos + 24, file_size)
                struct.pack_into("<I", buf, local + 22, file_size)
            if flags:
                struct.pack_into("<H", buf, pos + 8, struct.unpack_from("<H", buf, pos + 8)[0] | flags)
                struct.pack_into("<H", buf, local + 6, struct.unpack_from("<H", buf, local + 6)[0] | flags)
            if method is not None:
                struct.pack_into("<H", buf, pos + 10, method)
                struct.pack_into("<H", buf, local + 8, method)
        pos += 46 + n + m + k
    return bytes(buf)


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


class _Jail:
    """Run a load with the working directory in an empty folder under tmp_path; check
    afterwards that neither that folder nor tmp_path gained anything."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.work = tmp_path / "work"
        self.work.mkdir(exist_ok=True)

    def load(self, data, **kw):
        before = _listing(self.root)
        cwd = os.getcwd()
        os.chdir(self.work)
        try:
            if kw:
                return ImageTaskSource(data, **kw)
            return load_images(data)
        finally:
            os.chdir(cwd)
            assert _listing(self.root) == before
            assert os.listdir(self.work) == []


@pytest.fixture
def jail(tmp_path: Path) -> _Jail:
    return _Jail(tmp_path)


def test_the_good_archive_loads(jail: _Jail) -> None:
    loaded = jail.load(_zip(GOOD))
    assert loaded.images.shape == (6, 28, 28) and loaded.classes == ["c0", "c1"] and loaded.skipped_members == []


# ---------------------------------------------------------------------------------------------- names


def test_dotdot_absolute_backslash_and_drive_names_are_skipped(jail: _Jail, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    evil = [
        f"../{tag}/x.png",
        f"c0/../../{tag}/y.png",
        f"/tmp/{tag}/abs.png",
        f"..\\..\\{tag}\\win.png",
        f"c0\\..\\..\\{tag}\\mixed.png",
        f"C:\\{tag}\\drive.png",
        f"C:{tag}/relative_drive.png",
        f"c:/{tag}/lower.png",
        f"\\\\server\\share\\{tag}\\unc.png",
        f"\\{tag}\\rooted.png",
        f"//{tag}/double.png",
    ]
    data = _zip(GOOD + [(name, _png(99)) for name in evil])
    loaded = jail.load(data)
    assert loaded.classes == ["c0", "c1"]
    assert sorted(loaded.skipped_members) == sorted(f"{name} (unsafe name)" for name in evil)
    for where in (Path("/tmp"), tmp_path, tmp_path.parent, jail.work, jail.work.parent.parent):
        assert not (where / tag).exists()
    # Backslashes inside a safe name are folder separators, not a way out.
    win = _zip([(f"set\\k{c}\\{i}.png", _png(c * 5 + i)) for c in range(2) for i in range(2)])
    assert jail.load(win).classes == ["k0", "k1"]


def test_symlink_members_are_skipped_never_followed(jail: _Jail) -> None:
    links = []
    for name, target in (("c0/link.png", "/etc/passwd"), ("c1/up.png", "../../../../etc/shadow"), ("c2", "/")):
        info = zipfile.ZipInfo(name)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        links.append((info, target.encode()))
    loaded = jail.load(_zip(GOOD + links))
    assert loaded.classes == ["c0", "c1"] and loaded.images.shape[0] == 6
    assert sorted(loaded.skipped_members) == [
        "c0/link.png (symbolic link)",
        "c1/up.png (symbolic link)",
        "c2 (symbolic link)",
    ]


def test_unicode_and_very_long_names(jail: _Jail) -> None:
    long = "k" * 400
    entries = [(f"Ωμέγα/{long}/{i}.png", _png(i)) for i in range(2)] + [
        (f"Ωμέγα/字/{i}.png", _png(5 + i)) for i in range(2)
    ]
    loaded = jail.load(_zip(entries))
    assert loaded.classes == [long, "字"] or sorted(loaded.classes) == sorted([long, "字"])


# ---------------------------------------------------------------------------------------------- caps


def test_more_members_than_the_cap(jail: _Jail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(img_mod, "MAX_MEMBERS", 20)
    data = _zip(GOOD + [(f"notes/{i}.txt", b"") for i in range(20)])
    with pytest.raises(TaskError, match="declares 26 entries, more than MAX_MEMBERS=20"):
        jail.load(data)
    # An end record that under-declares the count does not help: the entries are counted too.
    eocd = data.rfind(b"PK\x05\x06")
    lying = bytearray(data)
    struct.pack_into("<HH", lying, eocd + 8, 1, 1)
    with pytest.raises(TaskError, match="has 26 entries, more than MAX_MEMBERS=20"):
        jail.load(bytes(lying))
    # Folders count as entries, images against max_images.
    with pytest.raises(TaskError, match="6 images, more than max_images=5"):
        jail.load(_zip(GOOD), max_images=5, n_way=2)


def test_member_larger_than_the_cap_by_declared_size(jail: _Jail) -> None:
    data = _patch(_zip(GOOD), "c0/1.png", file_size=MAX_MEMBER_BYTES + 1)
    with pytest.raises(
        TaskError, match=rf"image 'c0/1.png' is {MAX_MEMBER_BYTES + 1} bytes, more than MAX_MEMBER_BYTES"
    ):
        jail.load(data)


def test_more_uncompressed_bytes_than_the_cap(jail: _Jail) -> None:
    # 40 members each declaring 30 MiB: 1.2 GiB in all, refused before anything is read.
    entries = [(f"c{i % 4}/{i}.png", _png(i)) for i in range(40)]
    data = _zip(entries)
    for name, _ in entries:
        data = _patch(data, name, file_size=30 * 1024 * 1024)
    with pytest.raises(TaskError, match=rf"bytes uncompressed, more than MAX_TOTAL_BYTES={MAX_TOTAL_BYTES}"):
        jail.load(data)


def test_bytes_actually_read_are_capped_even_if_the_header_were_trusted(
    jail: _Jail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the zip library returned more than a member declares, the reader still stops at
    the caps (per member and in all), whatever the declared sizes say."""
    real_open = zipfile.ZipFile.open
    padded = _png(7) + b"\x00" * 1_200_000  # a valid PNG with trailing bytes PIL ignores

    def generous_open(self, name, mode="r", pwd=None, **kw):
        fh = real_open(self, name, mode, pwd, **kw)
        if getattr(name, "filename", name).startswith("c1/"):
            fh.close()
            return io.BytesIO(padded)  # far more than the header declares
        return fh

    monkeypatch.setattr(zipfile.ZipFile, "open", generous_open)
    monkeypatch.setattr(img_mod, "MAX_MEMBER_BYTES", 5000)
    with pytest.raises(TaskError, match="image 'c1/0.png' is more than MAX_MEMBER_BYTES=5000 bytes"):
        jail.load(_zip(GOOD))
    monkeypatch.setattr(img_mod, "MAX_MEMBER_BYTES", MAX_MEMBER_BYTES)
    monkeypatch.setattr(img_mod, "MAX_TOTAL_BYTES", 2_000_000)
    clear_image_cache()
    with pytest.raises(TaskError, match="more than MAX_TOTAL_BYTES=2000000 bytes uncompressed"):
        jail.load(_zip(GOOD))


@pytest.mark.timeout(60)
def test_zip_bomb_high_compression_ratio(jail: _Jail) -> None:
    zeros = b"\x00" * (40 * 1024 * 1024)
    bomb = _zip(GOOD + [("c0/bomb.png", zeros)])
    assert len(bomb) < 200_000  # a ratio of more than 200:1
    with pytest.raises(TaskError, match=r"image 'c0/bomb.png' is 41943040 bytes, more than MAX_MEMBER_BYTES"):
        jail.load(bomb)
    # The same bomb with a lying header (declares 1000 bytes): only 1000 bytes are ever
    # inflated, and the checksum then fails.
    liar = _patch(bomb, "c0/bomb.png", file_size=1000)
    with pytest.raises(TaskError, match=r"corrupt zip member 'c0/bomb.png': Bad CRC-32"):
        jail.load(liar)
    # A bomb that is not an image is never inflated at all.
    quiet = _zip(GOOD + [("c0/notes.txt", zeros)], compression=zipfile.ZIP_BZIP2)
    assert jail.load(quiet).images.shape[0] == 6


# ---------------------------------------------------------------------------------------------- contents


def test_nested_archives_are_ignored_not_opened(jail: _Jail) -> None:
    inner = _zip([(f"k{c}/{i}.png", _png(50 + c * 3 + i)) for c in range(3) for i in range(2)])
    loaded = jail.load(_zip(GOOD + [("c0/inner.zip", inner), ("inner.zip", inner)]))
    assert loaded.classes == ["c0", "c1"] and loaded.images.shape[0] == 6
    with pytest.raises(TaskError, match="no images found in the uploaded zip"):
        jail.load(_zip([("only/inner.zip", inner)]))
    # A zip dressed up as a PNG is decoded as an image and refused, naming it.
    with pytest.raises(TaskError, match=r"corrupt or unreadable image 'c1/inner.png': not a readable PNG or JPEG"):
        jail.load(_zip(GOOD + [("c1/inner.png", inner)]))


def test_non_image_members_are_ignored(jail: _Jail) -> None:
    extra = [
        ("readme.txt", b"hello"),
        ("c0/labels.csv", b"a,b\n1,2\n"),
        ("c0/script.sh", b"#!/bin/sh\nrm -rf /\n"),
        ("__MACOSX/c0/._0.png", b"\x00\x05\x16\x07junk"),  # AppleDouble shadow, named .png
        ("c0/.hidden.png", b"junk"),
        (".git/config", b"[core]"),
        ("c1/", b""),
    ]
    loaded = jail.load(_zip(GOOD + extra))
    assert loaded.classes == ["c0", "c1"] and loaded.images.shape[0] == 6 and loaded.skipped_members == []
    top = jail.load(_zip(GOOD + [("stray.png", _png(3))]))
    assert top.skipped_members == ["stray.png (not in a class folder)"]


def test_empty_archives(jail: _Jail, tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="no images found"):
        jail.load(_zip([]))
    with pytest.raises(TaskError, match="no images found"):
        jail.load(_zip([("c0/", b""), ("c1/", b"")]))
    with pytest.raises(TaskError, match="the uploaded archive is empty"):
        jail.load(b"")
    with pytest.raises(TaskError, match="the uploaded archive is empty"):
        jail.load(io.BytesIO(b""))
    zero = tmp_path / "zero.zip"
    zero.write_bytes(b"")
    with pytest.raises(TaskError, match="zero.zip' is not a valid zip file"):
        jail.load(zero)


def test_corrupt_and_truncated_zips(jail: _Jail, tmp_path: Path) -> None:
    data = _zip(GOOD, compression=zipfile.ZIP_STORED)
    for cut in (10, len(data) // 2, len(data) - 30, len(data) - 1):
        with pytest.raises(TaskError, match="not a valid zip file"):
            jail.load(data[:cut])
    path = tmp_path / "cut.zip"
    path.write_bytes(data[:-5])
    with pytest.raises(TaskError, match=r"cut.zip' is not a valid zip file"):
        jail.load(path)
    # Damaged member data (central directory intact): the member is named.
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo("c1/0.png")
    start = info.header_offset + 30 + len(info.filename) + 20
    broken = bytearray(data)
    broken[start : start + 8] = b"\xff" * 8
    with pytest.raises(TaskError, match=r"'c1/0.png'"):
        jail.load(bytes(broken))
    deflated = bytearray(_zip(GOOD))
    with zipfile.ZipFile(io.BytesIO(bytes(deflated))) as zf:
        info = zf.getinfo("c0/2.png")
    start = info.header_offset + 30 + len(info.filename)
    deflated[start : start + 4] = b"\xff\xff\xff\xff"
    with pytest.raises(TaskError, match=r"corrupt zip member 'c0/2.png'"):
        jail.load(bytes(deflated))
    # An unknown compression method (99 is WinZip AES).
    with pytest.raises(TaskError, match=r"corrupt zip member 'c0/0.png': .*compression method"):
        jail.load(_patch(_zip(GOOD), "c0/0.png", method=99))
    # A name that starts with NUL: zipfile cuts it to an empty name.
    empty_name = bytearray(_zip(GOOD + [("Xbad.png", _png(2))]))
    empty_name[bytes(empty_name).rfind(b"Xbad.png")] = 0
    assert jail.load(bytes(empty_name)).skipped_members == ["'' (empty name)"]
    # A central directory name flagged as UTF-8 that is not UTF-8.
    named = _zip(GOOD + [("c0/x\u00e9.png", _png(1))])
    central = named.rfind("c0/x\u00e9.png".encode())
    mangled = bytearray(named)
    mangled[central + 4] = 0xFF  # 0xc3 0xa9 -> 0xff 0xa9
    with pytest.raises(TaskError, match="not a valid zip file"):
        jail.load(bytes(mangled))


def test_non_zip_files_with_a_zip_name(jail: _Jail, tmp_path: Path) -> None:
    import gzip
    import tarfile

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("c0/0.png")
        info.size = len(GOOD[0][1])
        tf.addfile(info, io.BytesIO(GOOD[0][1]))
    fakes = {
        "text.zip": b"just some text, not a zip\n",
        "png.zip": GOOD[0][1],
        "tar.zip": tar.getvalue(),
        "gz.zip": gzip.compress(_zip(GOOD)),
        "random.zip": np.random.default_rng(1).bytes(3000),
        "eocd_only.zip": b"PK\x05\x06" + b"\x00" * 18,
    }
    for name, blob in fakes.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(TaskError, match="not a valid zip file|no images found"):
            jail.load(path)
        with pytest.raises(TaskError, match="not a valid zip file|no images found"):
            jail.load(blob)
    with pytest.raises(TaskError, match="is not a regular file"):
        fifo = tmp_path / "pipe.zip"
        os.mkfifo(fifo)
        jail.load(fifo)


def test_encrypted_members(jail: _Jail) -> None:
    data = _patch(_zip(GOOD), "c1/1.png", flags=0x1)
    with pytest.raises(TaskError, match=r"image 'c1/1.png' is encrypted; password-protected zips are not supported"):
        jail.load(data)
    # An encrypted member that is not an image is never read.
    quiet = _patch(_zip(GOOD + [("secret.txt", b"x" * 100)]), "secret.txt", flags=0x1)
    assert jail.load(quiet).images.shape[0] == 6


# ---------------------------------------------------------------------------------------------- properties

_PARTS = st.one_of(
    st.sampled_from(["..", ".", "", "c0", "c1", "C:", "c:", "/", "\\", "__MACOSX", ".hidden", "~", "k" * 200]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=8),
)
_NAMES = st.builds(
    lambda parts, sep, ext: (parts, sep, ext),
    st.lists(_PARTS, min_size=0, max_size=4),
    st.sampled_from(["/", "\\", "/", "/"]),
    st.sampled_from([".png", ".PNG", ".jpg", ".txt", ".zip", ""]),
)


def _escapes(names: list[str], work: str) -> list[str]:
    """Where each member would land if it were extracted naively, relative to ``work`` or
    to the root, that exists after loading (each name ends in a unique file name)."""
    found = []
    for name in names:
        clean = name.replace("\\", "/")
        for base in (work, "/"):
            target = os.path.normpath(os.path.join(base, clean.lstrip("/")))
            if os.path.lexists(target):
                found.append(target)
    return found


def _load_or_refuse(data: bytes, names: list[str] = ()) -> None:
    with tempfile.TemporaryDirectory() as work:
        cwd = os.getcwd()
        os.chdir(work)
        try:
            try:
                loaded = load_images(data)
            except TaskError as exc:
                assert str(exc)
            else:
                assert loaded.images.dtype == np.uint8 and loaded.images.shape[1:] == (28, 28)
                assert len(loaded.classes) == len(loaded.indices) >= 1
                assert sum(len(ix) for ix in loaded.indices) == loaded.images.shape[0]
        finally:
            os.chdir(cwd)
        assert os.listdir(work) == []
        assert _escapes(list(names), work) == []


@given(data=st.binary(max_size=800))
@settings(max_examples=150, deadline=None)
def test_property_arbitrary_bytes(data: bytes) -> None:
    _load_or_refuse(data)


@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
@settings(max_examples=150, deadline=None)
def test_property_mangled_zip_bytes(flips, cut) -> None:
    data = bytearray(_zip(GOOD[:4], compression=zipfile.ZIP_STORED))
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    _load_or_refuse(bytes(data))


@given(
    members=st.lists(
        st.tuples(_NAMES, st.sampled_from(["png", "junk", "empty", "zip"]), st.booleans()), min_size=0, max_size=8
    ),
    with_good=st.booleans(),
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_random_member_names(members, with_good: bool) -> None:
    entries = list(GOOD) if with_good else []
    token = uuid.uuid4().hex
    names = []
    for k, ((parts, sep, ext), kind, link) in enumerate(members):
        name = sep.join([*parts, f"{token}_{k}{ext}"])
        names.append(name)
        data = {"png": _png(k), "junk": b"\x89PNG junk", "empty": b"", "zip": _zip(GOOD[:2])}[kind]
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        entries.append((info, data))
    try:
        data = _zip(entries)
    except (ValueError, UnicodeEncodeError):  # a name zipfile itself cannot write
        return
    _load_or_refuse(data, names)
