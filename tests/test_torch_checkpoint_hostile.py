"""Malformed and hostile PyTorch checkpoints (issue 22): each ends as a WeightsError naming the file and the problem.

Never an out-of-bounds read (a tensor carrying neighbouring heap bytes), a crash (a segfault, or exit 70 'a bug'),
or an allocation sized by a number the file merely claims. A valid file still loads with the right values.
The files are written by hand, as torch writes them (pickle protocol 2, persistent ids for storages), without torch.
"""

import collections
import io
import pickle
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import numpy as np
import pytest

from fakedetect.errors import WeightsError
from fakedetect.models.torch_checkpoint import load_state_dict


# Stand-ins for torch's globals: pickled by reference as this module's, then renamed to torch's in the bytes
# (protocol 2 writes a global as the plain text 'c<module>\n<name>\n').
class FloatStorage:
    pass


class DoubleStorage:
    pass


class LongStorage:
    pass


class ByteStorage:
    pass


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called: renamed to torch._utils._rebuild_tensor_v2 in the pickle")


_RENAMES = {f"c{__name__}\n{name}\n".encode(): f"c{module}\n{name}\n".encode() for module, name in [
    ("torch", "FloatStorage"), ("torch", "DoubleStorage"), ("torch", "LongStorage"), ("torch", "ByteStorage"),
    ("torch._utils", "_rebuild_tensor_v2"),
]}
_NUMPY = {FloatStorage: np.float32, DoubleStorage: np.float64, LongStorage: np.int64, ByteStorage: np.uint8}


class Storage:
    """A storage: pickled as torch's persistent id, its bytes written beside the pickle (zip) or after it (legacy).

    ``numel`` is what the persistent id declares, ``count`` what the legacy record's header does (both default to
    the real element count); ``pid`` replaces the whole persistent id.
    """

    def __init__(self, key, values, stype=FloatStorage, numel=None, count=None, pid=None):
        self.key, self.stype = key, stype
        self.data = np.asarray(values, dtype=_NUMPY.get(stype, np.float32))
        self.numel = self.data.size if numel is None else numel
        self.count = self.numel if count is None else count
        self.pid = pid


class Tensor:
    """A tensor as torch pickles it: ``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``.

    ``state`` adds a BUILD of that state after the rebuild (a pickle setting attributes on the result).
    """

    def __init__(self, storage, offset, size, stride, state=None):
        self.storage, self.offset, self.size, self.stride, self.state = storage, offset, size, stride, state

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return (_rebuild_tensor_v2, args) if self.state is None else (_rebuild_tensor_v2, args, self.state)


class _Pickler(pickle.Pickler):
    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        if obj.pid is not None:
            return obj.pid
        pid = ("storage", obj.stype, obj.key, "cpu", obj.numel)
        return pid + (None,) if self.legacy else pid  # legacy ids end with view_metadata


def _dumps(obj, legacy=False) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, legacy).dump(obj)
    data = buf.getvalue()
    for ours, torchs in _RENAMES.items():
        data = data.replace(ours, torchs)
    return data


def _storages(state) -> list[Storage]:
    """The distinct storages of the state dict's tensors, first one per key (as torch writes each storage once)."""
    seen = {}
    for v in state.values() if isinstance(state, dict) else ():
        if isinstance(v, Tensor) and isinstance(v.storage, Storage):
            seen.setdefault(v.storage.key, v.storage)
    return list(seen.values())


def zip_pth(path, state, compression=zipfile.ZIP_STORED):
    """A zip-format checkpoint (torch >= 1.6): archive/data.pkl, archive/data/<key>, archive/version."""
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("archive/data.pkl", _dumps(state))
        for s in _storages(state):
            z.writestr(f"archive/data/{s.key}", s.data.tobytes())
        z.writestr("archive/version", "3\n")
    return path


def legacy_pth(path, state):
    """A legacy checkpoint: magic, protocol, sys info, the state dict, its storage keys, then each storage's record
    (int64 element count, raw elements)."""
    buf = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, buf, protocol=2)
    buf.write(_dumps(state, legacy=True))
    storages = _storages(state)
    pickle.dump([s.key for s in storages], buf, protocol=2)
    for s in storages:
        buf.write(struct.pack("<q", s.count))
        buf.write(s.data.tobytes())
    path.write_bytes(buf.getvalue())
    return path


WRITERS = pytest.mark.parametrize("write", [zip_pth, legacy_pth], ids=["zip", "legacy"])


def _refused(path, *fragments) -> str:
    """Loads ``path``, which must fail as a WeightsError whose message names the file and holds ``fragments``."""
    with pytest.raises(WeightsError) as info:
        load_state_dict(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def _four():
    return Storage("0", [1.0, 2.0, 3.0, 4.0])


# (1) a tensor larger than its storage: loaded, carrying the heap bytes after it


@WRITERS
def test_tensor_reaching_past_its_storage_is_refused(tmp_path, write):
    path = write(tmp_path / "w.pth", {"w": Tensor(_four(), 0, (64,), (1,))})
    _refused(path, "tensor 'w'", "reach element 63 of storage '0', which holds 4")


def test_storage_claiming_more_elements_than_its_zip_member_holds_is_refused(tmp_path):
    path = zip_pth(tmp_path / "w.pth", {"w": Tensor(Storage("0", [1.0, 2.0, 3.0, 4.0], numel=64), 0, (64,), (1,))})
    _refused(path, "member 'archive/data/0' holds 16 bytes, but its storage record declares 256")


# (2) a huge stride segfaulted (exit 139): run in a child so that the old code's crash fails this test only

_LOAD_IN_CHILD = textwrap.dedent("""
    import sys
    from fakedetect.errors import WeightsError
    from fakedetect.models.torch_checkpoint import load_state_dict
    try:
        load_state_dict(sys.argv[1])
    except WeightsError as e:
        print(e)
        sys.exit(3)
""")


@WRITERS
def test_huge_stride_is_refused_before_any_view(tmp_path, write):
    path = write(tmp_path / "w.pth", {"w": Tensor(_four(), 0, (2, 2), (1 << 40, 1))})
    res = subprocess.run([sys.executable, "-c", _LOAD_IN_CHILD, str(path)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 3, f"exit {res.returncode}: {res.stdout}{res.stderr}"
    assert str(path) in res.stdout and "reach element 1099511627777 of storage '0'" in res.stdout, res.stdout


# (3) negative offsets, strides and sizes, and other impossible shapes


@WRITERS
@pytest.mark.parametrize("offset, size, stride, fragment", [
    (-1, (4,), (1,), "storage offset -1"),
    (3, (4,), (-1,), "stride (-1,)"),
    (0, (2, 2), (2, -1), "stride (2, -1)"),
    (0, (-4,), (1,), "size (-4,)"),
    (4, (), (), "reach element 4 of storage '0', which holds 4"),
    (1, (4,), (1,), "reach element 4 of storage '0', which holds 4"),
    (0, (2, 2), (1,), "2 sizes but 1 strides"),
    ("0", (4,), (1,), "storage offset '0'"),
    (0, "abcd", (1,), "size 'abcd'"),
    (0, (4,), (1.0,), "stride (1.0,)"),
], ids=["negative-offset", "negative-stride", "negative-inner-stride", "negative-size", "scalar-past-end",
        "offset-past-end", "size-stride-mismatch", "string-offset", "string-size", "float-stride"])
def test_impossible_offset_size_or_stride_is_refused(tmp_path, write, offset, size, stride, fragment):
    path = write(tmp_path / "w.pth", {"w": Tensor(_four(), offset, size, stride)})
    _refused(path, "malformed PyTorch checkpoint", fragment)


@WRITERS
def test_pickle_cannot_overwrite_a_checked_tensor(tmp_path, write):
    """A BUILD after the rebuild used to set the tensor's size to 64 once the rebuild had taken (4,)."""
    path = write(tmp_path / "w.pth", {"w": Tensor(_four(), 0, (4,), (1,), state={"size": (64,)})})
    _refused(path, "refusing to set the state of a TensorRef")


@WRITERS
def test_one_storage_declared_with_two_types_is_refused(tmp_path, write):
    """Read as 4 bytes, then viewed as 4 doubles: 28 bytes past the storage."""
    state = {"a": Tensor(Storage("0", [1, 2, 3, 4], stype=ByteStorage), 0, (4,), (1,)),
             "b": Tensor(Storage("0", [1.0, 2.0, 3.0, 4.0], stype=DoubleStorage), 0, (4,), (1,))}
    _refused(write(tmp_path / "w.pth", state), "storage '0' is declared both as 4 x uint8 and as 4 x float64")


# (4) storage types that are not storage types


@WRITERS
@pytest.mark.parametrize("stype, shown", [
    ("FloatStorage", "'FloatStorage'"),
    (collections.OrderedDict, "OrderedDict"),
    (_rebuild_tensor_v2, "RebuildTensorV2"),
], ids=["plain-string", "ordered-dict-class", "rebuild-function"])
def test_storage_type_that_is_not_a_storage_type_is_refused(tmp_path, write, stype, shown):
    path = write(tmp_path / "w.pth", {"w": Tensor(Storage("0", [1.0, 2.0, 3.0, 4.0], stype=stype), 0, (4,), (1,))})
    _refused(path, "storage '0' has the type", shown, "not a storage type")


@WRITERS
@pytest.mark.parametrize("pid, fragment", [
    (7, "persistent id 7 that is not a storage record"),
    (("storage", FloatStorage, "0", "cpu", -4), "storage '0' declares -4 elements"),
    (("storage", FloatStorage, ["0"], "cpu", 4), "storage key ['0']"),
], ids=["int", "negative-numel", "list-key"])
def test_malformed_persistent_id_is_refused(tmp_path, write, pid, fragment):
    path = write(tmp_path / "w.pth", {"w": Tensor(Storage("0", [1.0, 2.0, 3.0, 4.0], pid=pid), 0, (4,), (1,))})
    _refused(path, fragment)


@WRITERS
@pytest.mark.parametrize("state, fragment", [
    ({1: "x"}, "entry 1 is not named by a string"),
    ([1, 2], "does not hold a state dict"),
], ids=["int-key", "list"])
def test_not_a_state_dict_is_refused(tmp_path, write, state, fragment):
    _refused(write(tmp_path / "w.pth", state), fragment)


# (5) corrupt zip archives


def _patch_member(path, name, **fields):
    """Rewrites fields of one member's central-directory and local headers in place."""
    central = {"flags": (8, "<H"), "method": (10, "<H"), "compress_size": (20, "<I"), "file_size": (24, "<I")}
    local = {"flags": (6, "<H"), "method": (8, "<H"), "compress_size": (18, "<I"), "file_size": (22, "<I")}
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        local_at = z.getinfo(name).header_offset
    central_at = data.index(b"PK\x01\x02")
    while data[central_at + 46: central_at + 46 + len(name)] != name.encode():
        central_at = data.index(b"PK\x01\x02", central_at + 4)
    for field, value in fields.items():
        for at, table in ((central_at, central), (local_at, local)):
            offset, fmt = table[field]
            struct.pack_into(fmt, data, at + offset, value)
    path.write_bytes(bytes(data))


def _valid_zip(tmp_path, compression=zipfile.ZIP_STORED):
    return zip_pth(tmp_path / "w.pth", {"w": Tensor(_four(), 0, (4,), (1,))}, compression)


def test_deflated_member_that_expands_like_a_bomb_is_refused(tmp_path):
    zeros = Storage("0", [0.0] * 4_000_000)  # 16 MB of zeros: deflate packs them ~1000x
    path = zip_pth(tmp_path / "bomb.pth", {"w": Tensor(zeros, 0, (4_000_000,), (1,))}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    _refused(path, "compression bomb")
    ok = zip_pth(tmp_path / "ok.pth", {"w": Tensor(_four(), 0, (4,), (1,))}, zipfile.ZIP_DEFLATED)
    assert load_state_dict(ok)["w"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_zip_with_bad_crc_is_refused(tmp_path):
    path = _valid_zip(tmp_path)
    data = path.read_bytes()
    at = data.index(np.float32([1.0, 2.0, 3.0, 4.0]).tobytes())
    path.write_bytes(data[:at] + b"\xff" + data[at + 1:])
    _refused(path, "not a readable PyTorch checkpoint", "BadZipFile", "Bad CRC-32")


def test_zip_member_claiming_more_than_the_file_holds_is_refused(tmp_path):
    path = _valid_zip(tmp_path)
    _patch_member(path, "archive/data/0", compress_size=1 << 30, file_size=1 << 30)
    _refused(path, "member 'archive/data/0' claims 1073741824 bytes in the archive", "truncated or corrupt")


def test_zip_member_cut_short_is_refused(tmp_path):
    """The pickle's sizes fit the file but run over the members after it: the read meets the file's end."""
    path = _valid_zip(tmp_path)
    size = path.stat().st_size
    _patch_member(path, "archive/data.pkl", compress_size=size - 50, file_size=size - 50)
    _refused(path, "not a readable PyTorch checkpoint")


def test_zip_with_corrupt_deflate_stream_is_refused(tmp_path):
    path = _valid_zip(tmp_path, zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("archive/data/0")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start: start + info.compress_size] = b"\xff" * info.compress_size  # block type 3: invalid
    path.write_bytes(bytes(data))
    _refused(path, "not a readable PyTorch checkpoint", "decompressing")


@pytest.mark.parametrize("fields, fragment", [
    ({"method": 99}, "member 'archive/data/0' uses an unsupported compression method (99)"),
    ({"flags": 1}, "member 'archive/data/0' is encrypted"),
], ids=["unknown-compression", "encrypted"])
def test_zip_member_that_cannot_be_read_is_refused(tmp_path, fields, fragment):
    path = _valid_zip(tmp_path)
    _patch_member(path, "archive/data/0", **fields)
    _refused(path, fragment)


def test_zip_without_a_storage_member_is_refused(tmp_path):
    path = tmp_path / "w.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", _dumps({"w": Tensor(_four(), 0, (4,), (1,))}))
    _refused(path, "the archive has no member 'archive/data/0'")


# the legacy format's storage records


@pytest.mark.parametrize("count", [1 << 27, 1 << 40], ids=["512MiB", "4TiB"])
def test_legacy_record_claiming_more_than_the_file_holds_is_refused_without_allocating(tmp_path, count):
    storage = Storage("0", [1.0, 2.0, 3.0, 4.0], numel=count)
    path = legacy_pth(tmp_path / "w.pth", {"w": Tensor(storage, 0, (4,), (1,))})
    tracemalloc.start()
    try:
        _refused(path, f"storage '0' claims {count} elements of float32, but 16 bytes are left in the file")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak} bytes allocated"


@pytest.mark.parametrize("storage, fragment", [
    (Storage("0", [1.0] * 8, numel=4, count=8), "storage '0' holds 8 elements, but the pickle declares 4"),
    (Storage("0", [1.0] * 4, count=-1), "storage '0' claims -1 elements"),
], ids=["count-differs-from-pickle", "negative-count"])
def test_legacy_record_disagreeing_with_its_pickle_is_refused(tmp_path, storage, fragment):
    _refused(legacy_pth(tmp_path / "w.pth", {"w": Tensor(storage, 0, (4,), (1,))}), fragment)


def test_legacy_file_ending_inside_a_record_is_refused(tmp_path):
    path = legacy_pth(tmp_path / "w.pth", {"w": Tensor(_four(), 0, (4,), (1,))})
    path.write_bytes(path.read_bytes()[:-3])
    _refused(path, "storage '0' claims 4 elements of float32, but 13 bytes are left")
    path.write_bytes(path.read_bytes()[:-15])  # inside the count itself
    _refused(path, "the file ends before storage '0'")


def test_missing_or_directory_path_is_a_weights_error(tmp_path):
    _refused(tmp_path / "missing.pth", "not a readable PyTorch checkpoint", "FileNotFoundError")
    _refused(tmp_path, "not a readable PyTorch checkpoint")


# (6) a valid checkpoint still loads, views and all


@WRITERS
def test_valid_checkpoint_loads_with_the_right_values(tmp_path, write):
    shared = Storage("0", np.arange(12))
    doubles = Storage("1", [0.5, -1.5], stype=DoubleStorage)
    state = collections.OrderedDict([
        ("w", Tensor(shared, 0, (3, 4), (4, 1))),
        ("wt", Tensor(shared, 0, (4, 3), (1, 4))),  # a transposed view of the same storage
        ("b", Tensor(shared, 10, (2,), (1,))),  # an offset into it
        ("cols", Tensor(shared, 1, (3, 2), (4, 2))),  # offset and non-unit strides
        ("s", Tensor(shared, 5, (), ())),  # a scalar
        ("e", Tensor(shared, 12, (0, 3), (3, 1))),  # empty: any offset
        ("x", Tensor(shared, 2, (3, 2), (0, 1))),  # expanded (stride 0)
        ("d", Tensor(doubles, 0, (2,), (1,))),
        ("bn.num_batches_tracked", Tensor(Storage("2", [7], stype=LongStorage), 0, (), ())),
    ])
    out = load_state_dict(write(tmp_path / "w.pth", state))
    grid = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = {"w": grid, "wt": grid.T, "b": np.float32([10, 11]), "cols": grid[:, 1::2], "s": np.float32(5),
                "e": np.zeros((0, 3), np.float32), "x": np.float32([[2, 3]] * 3), "d": np.float64([0.5, -1.5])}
    assert list(out) == list(expected)
    for k, want in expected.items():
        assert out[k].dtype == want.dtype and out[k].shape == want.shape, k
        np.testing.assert_array_equal(out[k], want, err_msg=k)
    out["w"][0, 0] = 99  # copies, not views of one another or of the file's bytes
    assert out["wt"][0, 0] == 0
