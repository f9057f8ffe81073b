"""Read PyTorch checkpoint files (legacy and zip formats) into numpy, without importing torch.

Only plain state dicts of float tensors are supported: exactly what the offline ImageNet weight packages ship.
The unpickler resolves no classes beyond the handful a state dict needs, so a hostile file cannot run code.
Every count, offset, size and stride in the file is checked against the bytes it actually holds before anything is
read or viewed: a malformed (or hostile) file ends as a :class:`~fakedetect.errors.WeightsError` naming the file and
the problem, never as an out-of-bounds read, a crash or an allocation sized by a number the file merely claims.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from fakedetect.errors import WeightsError

# A deflated member may expand at most this many times (from at least 1 KiB): float weights compress by less
# than 2x and a state dict's pickle by about 10x, while deflate allows ~1000x (a zip bomb inside a .pth).
MAX_DEFLATE_RATIO = 64
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
#: A tensor may hold more elements than its storage only by repeating them (a zero or overlapping stride, as from
#: ``expand``); copying it out then allocates more than the file holds, so that is bounded (256 MiB of float32).
_MAX_REPEATED_ELEMENTS = 1 << 26


class _Refused(pickle.UnpicklingError):
    """The file asks for a class or callable that a plain state dict never needs."""


class _Malformed(ValueError):
    """The file's own records disagree: a count, offset, size or stride that does not fit the data it holds."""


def _short(value) -> str:
    """``repr`` of a value from the file, cut short: a hostile file decides how long it is."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Sealed:
    """An object the unpickler hands to the pickle: the pickle may not set its attributes (the BUILD opcode).

    Without this a pickle could rebuild a tensor with checked values and then overwrite them.
    """
    __slots__ = ()

    def __setstate__(self, state):
        raise _Refused(f"refusing to set the state of a {type(self).__name__.lstrip('_')} from a weights file")


class _StorageType(_Sealed):
    """``torch.FloatStorage`` and the like, as named in a persistent id."""
    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(_DTYPES[name])


class _StorageRef(_Sealed):
    """A storage named by a persistent id: its key and element type. Only ``persistent_load`` makes these."""
    __slots__ = ("key", "dtype")

    def __init__(self, key: str, dtype: np.dtype):
        self.key, self.dtype = key, dtype


def _is_index(value) -> bool:
    return type(value) is int and value >= 0


class _TensorRef(_Sealed):
    """A tensor whose storage is read after the pickle (legacy format) or from the zip (new format)."""
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise _Malformed(f"a tensor whose storage is {_short(storage)}, not a storage record")
        if not _is_index(offset):
            raise _Malformed(f"a tensor with storage offset {_short(offset)} (must be an integer >= 0)")
        for what, values in (("size", size), ("stride", stride)):
            if not isinstance(values, tuple | list) or not all(_is_index(v) for v in values):
                raise _Malformed(f"a tensor with {what} {_short(values)} (must be a tuple of integers >= 0)")
        if len(size) != len(stride):
            raise _Malformed(f"a tensor with {len(size)} sizes but {len(stride)} strides")
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialise(self, storages: dict[str, np.ndarray]) -> np.ndarray:
        """Copies the tensor out of its storage, once every element it covers is known to lie inside it."""
        key = self.storage.key
        flat = storages.get(key)
        if flat is None:
            raise _Malformed(f"its storage {key!r} is missing")
        if flat.dtype != self.storage.dtype:
            raise _Malformed(f"its storage {key!r} holds {flat.dtype}, not {self.storage.dtype}")
        if 0 in self.size:  # no elements: nothing is read, whatever the offset and strides
            return np.empty(self.size, dtype=flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= flat.size:
            raise _Malformed(f"offset {self.offset}, size {self.size} and stride {self.stride} reach element {last} "
                             f"of storage {key!r}, which holds {flat.size}")
        count = math.prod(self.size)
        if count > max(flat.size, _MAX_REPEATED_ELEMENTS):
            raise _Malformed(f"size {self.size} repeats the {flat.size} elements of storage {key!r} into {count}")
        if not self.size:
            return flat[self.offset].copy()
        return np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=[s * flat.itemsize for s in self.stride], writeable=False
        ).copy()


class _RebuildTensorV2(_Sealed):
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])``."""
    __slots__ = ()

    def __call__(self, storage, offset, size, stride, *_ignored):
        return _TensorRef(storage, offset, size, stride)


_rebuild_tensor_v2 = _RebuildTensorV2()


class _PlainUnpickler(pickle.Unpickler):
    """Reads plain data only (numbers, strings, lists, dicts): any class or callable is refused."""
    def find_class(self, module, name):
        raise _Refused(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        raise _Refused("refusing an unexpected persistent id in a weights file")


class _Unpickler(pickle.Unpickler):
    """Resolves only what a state dict of tensors needs; anything else (a hostile ``__reduce__``) is refused.

    ``declared`` maps each storage key the pickle names to its element type and element count.
    """
    def __init__(self, file):
        super().__init__(file)
        self.declared: dict[str, tuple[np.dtype, int]] = {}

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise _Refused(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata]); a legacy view is read as its root
        if not isinstance(pid, tuple | list) or len(pid) < 5:
            raise _Malformed(f"a persistent id {_short(pid)} that is not a storage record")
        if pid[0] != "storage":
            raise _Refused(f"refusing an unsupported persistent id {_short(pid[0])}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise _Malformed(f"a storage key {_short(key)} (must be a string)")
        key = str(key)
        if not isinstance(storage_type, _StorageType):
            raise _Malformed(f"storage {key!r} has the type {_short(storage_type)}, not a storage type "
                             f"({', '.join('torch.' + n for n in _DTYPES)})")
        if not _is_index(numel):
            raise _Malformed(f"storage {key!r} declares {_short(numel)} elements (must be an integer >= 0)")
        declared = self.declared.setdefault(key, (storage_type.dtype, numel))
        if declared != (storage_type.dtype, numel):
            raise _Malformed(f"storage {key!r} is declared both as {declared[1]} x {declared[0]} "
                             f"and as {numel} x {storage_type.dtype}")
        return _StorageRef(key, storage_type.dtype)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Returns the state dict in a PyTorch ``.pth`` file as numpy arrays (num_batches_tracked dropped).

    Every pickle in the file is read by a restricted unpickler: no code in the file ever runs. Every size the file
    states is checked against the bytes it holds before anything is read, allocated or viewed.

    Raises:
        WeightsError: not a PyTorch checkpoint, a refused (possibly hostile) pickle, a malformed file (truncated,
            corrupt, or with offsets, sizes or strides outside its data), or not a plain state dict.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            refs, storages = _load_zip(path)
        else:
            refs, storages = _load_legacy(path)
    except _Refused as e:
        raise WeightsError(f"{path}: {e} (fakedetect reads plain state dicts of tensors only)") from e
    except _Malformed as e:
        raise WeightsError(f"{path} is a malformed PyTorch checkpoint: {e}") from e
    except Exception as e:
        # Everything above only parses the file's bytes (pickle, zip, its decompressors, struct, numpy): whatever
        # they raise (BadZipFile, a CRC error, EOFError, struct.error, zlib.error, MemoryError, OSError...) means
        # this file cannot be read. The cause stays chained for --debug.
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(refs, dict):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    out = {}
    for k, v in refs.items():
        if not isinstance(k, str):
            raise WeightsError(f"{path}: entry {_short(k)} is not named by a string")
        if k.endswith("num_batches_tracked"):
            continue
        if not isinstance(v, _TensorRef):
            raise WeightsError(f"{path}: entry {k!r} is not a tensor")
        try:
            out[k] = v.materialise(storages)
        except _Malformed as e:
            raise WeightsError(f"{path} is a malformed PyTorch checkpoint: tensor {k!r}: {e}") from e
        except Exception as e:  # numpy on a bounded copy: MemoryError, or a ValueError (too many dimensions)
            raise WeightsError(f"{path}: tensor {k!r} cannot be read ({type(e).__name__}: {e})") from e
    return out


def _load_legacy(path: Path):
    with open(path, "rb") as f:
        if _PlainUnpickler(f).load() != _LEGACY_MAGIC:
            raise ValueError("no PyTorch magic number")
        _PlainUnpickler(f).load()  # protocol version
        _PlainUnpickler(f).load()  # sys info
        unpickler = _Unpickler(f)
        refs = unpickler.load()
        if not isinstance(refs, dict):
            return refs, {}
        keys = _PlainUnpickler(f).load()
        if not isinstance(keys, list | tuple) or not all(isinstance(k, str) for k in keys):
            raise _Malformed(f"the storage keys {_short(keys)} are not a list of strings")
        file_size = os.fstat(f.fileno()).st_size
        storages = {}
        for key in keys:
            # Each record: its element count (int64), then the raw elements. The count is checked against the
            # bytes left in the file, and against the pickle's own, before anything is read or allocated.
            if key not in unpickler.declared:
                raise _Malformed(f"storage {key!r} is stored but no tensor names it")
            dtype, numel = unpickler.declared[key]
            header = f.read(8)
            if len(header) < 8:
                raise _Malformed(f"the file ends before storage {key!r}")
            (count,) = struct.unpack("<q", header)
            left = file_size - f.tell()
            if count < 0 or count * dtype.itemsize > left:
                raise _Malformed(f"storage {key!r} claims {count} elements of {dtype}, but {left} bytes are left "
                                 "in the file (truncated or corrupt)")
            if count != numel:
                raise _Malformed(f"storage {key!r} holds {count} elements, but the pickle declares {numel}")
            data = f.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise _Malformed(f"the file ends inside storage {key!r}")
            storages[key] = np.frombuffer(data, dtype=dtype)
    return refs, storages


def _load_zip(path: Path):
    archive_size = path.stat().st_size
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise ValueError("a zip file without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        unpickler = _Unpickler(io.BytesIO(_read_member(z, pkl, archive_size)))
        refs = unpickler.load()
        if not isinstance(refs, dict):
            return refs, {}
        storages = {}
        for v in refs.values():
            if isinstance(v, _TensorRef) and v.storage.key not in storages:
                key, dtype = v.storage.key, v.storage.dtype
                expected = unpickler.declared[key][1] * dtype.itemsize
                data = _read_member(z, f"{prefix}data/{key}", archive_size, expected)
                storages[key] = np.frombuffer(data, dtype=dtype)
    return refs, storages


def _read_member(z: zipfile.ZipFile, name: str, archive_size: int, expected: int | None = None) -> bytes:
    """One member of the archive, read only once its stated sizes fit the file (and, for a storage, its records).

    ``zipfile`` reads at most the member's stated size, in chunks of up to its stated compressed size: both are
    checked first, so no read or allocation is sized by a number the file merely claims.
    """
    try:
        info = z.getinfo(name)
    except KeyError:
        raise _Malformed(f"the archive has no member {name!r}") from None
    if info.flag_bits & 0x1:
        raise _Malformed(f"member {name!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Malformed(f"member {name!r} uses an unsupported compression method ({info.compress_type})")
    if info.compress_size > archive_size:
        raise _Malformed(f"member {name!r} claims {info.compress_size} bytes in the archive, more than the "
                         f"{archive_size}-byte file holds (truncated or corrupt)")
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size,
                                                                                               1024):
        raise _Malformed(f"member {name!r} claims to expand from {info.compress_size} to {info.file_size} bytes, more "
                         f"than {MAX_DEFLATE_RATIO} times (a compression bomb; torch.save writes members uncompressed)")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise _Malformed(f"member {name!r} is stored uncompressed, but claims {info.file_size} bytes and "
                         f"{info.compress_size} in the archive (corrupt)")
    if expected is not None and info.file_size != expected:
        raise _Malformed(f"member {name!r} holds {info.file_size} bytes, but its storage record declares {expected}")
    data = z.read(info)
    if len(data) != info.file_size:
        raise _Malformed(f"member {name!r} ends after {len(data)} of its {info.file_size} bytes (truncated)")
    return data
