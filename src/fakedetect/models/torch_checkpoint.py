"""Read PyTorch checkpoint files (legacy and zip formats) into numpy, without importing torch.

Only plain state dicts of float tensors are supported: exactly what the offline ImageNet weight packages ship.
The unpickler resolves no classes beyond the handful a state dict needs, so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from fakedetect.errors import WeightsError

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


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _DTYPES[name]


class _TensorRef:
    """A tensor whose storage is read after the pickle (legacy format) or from the zip (new format)."""
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialise(self, storages: dict[str, np.ndarray]) -> np.ndarray:
        key, dtype = self.storage
        flat = storages[key]
        itemsize = np.dtype(dtype).itemsize
        if not self.size:
            return flat[self.offset].copy()
        return np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride]
        ).copy()


def _rebuild_tensor_v2(storage, offset, size, stride, *_ignored):
    return _TensorRef(storage, offset, size, stride)


class _Refused(pickle.UnpicklingError):
    """The file asks for a class or callable that a plain state dict never needs."""


class _PlainUnpickler(pickle.Unpickler):
    """Reads plain data only (numbers, strings, lists, dicts): any class or callable is refused."""
    def find_class(self, module, name):
        raise _Refused(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        raise _Refused("refusing an unexpected persistent id in a weights file")


class _Unpickler(pickle.Unpickler):
    """Resolves only what a state dict of tensors needs; anything else (a hostile ``__reduce__``) is refused."""
    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise _Refused(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if pid[0] != "storage":
            raise _Refused(f"refusing an unsupported persistent id {pid[0]!r}")
        return (str(pid[2]), pid[1].dtype)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Returns the state dict in a PyTorch ``.pth`` file as numpy arrays (num_batches_tracked dropped).

    Every pickle in the file is read by a restricted unpickler: no code in the file ever runs.

    Raises:
        WeightsError: not a PyTorch checkpoint, a refused (possibly hostile) pickle, or not a plain state dict.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            refs, storages = _load_zip(path)
        else:
            refs, storages = _load_legacy(path)
    except _Refused as e:
        raise WeightsError(f"{path}: {e} (fakedetect reads plain state dicts of tensors only)") from e
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, struct.error, zipfile.BadZipFile,
            IndexError) as e:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(refs, dict):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    out = {}
    for k, v in refs.items():
        if k.endswith("num_batches_tracked"):
            continue
        if not isinstance(v, _TensorRef):
            raise WeightsError(f"{path}: entry {k!r} is not a tensor")
        out[k] = v.materialise(storages)
    return out


def _load_legacy(path: Path):
    with open(path, "rb") as f:
        if _PlainUnpickler(f).load() != _LEGACY_MAGIC:
            raise ValueError("no PyTorch magic number")
        _PlainUnpickler(f).load()  # protocol version
        _PlainUnpickler(f).load()  # sys info
        refs = _Unpickler(f).load()
        keys = _PlainUnpickler(f).load()
        dtypes = {}
        for v in refs.values():
            if isinstance(v, _TensorRef):
                dtypes[v.storage[0]] = v.storage[1]
        storages = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(dtypes[key])
            storages[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype=dtype)
    return refs, storages


def _load_zip(path: Path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise ValueError("a zip file without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        import io

        refs = _Unpickler(io.BytesIO(z.read(pkl))).load()
        storages = {}
        for v in refs.values():
            if isinstance(v, _TensorRef) and v.storage[0] not in storages:
                key, dtype = v.storage
                storages[key] = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype=dtype)
    return refs, storages
