"""Finding labelled images on disk, checking them, and splitting them.

Layouts accepted (class folder names are case-insensitive):
    DATA/real, DATA/fake                       (also 0_real / 1_fake)
    DATA/{train,val,test}/{real,fake}          (any other split folder name is kept as a split too)
Labels are fixed, whatever the folder order: real = 0, fake = 1.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedetect import CLASS_NAMES
from fakedetect.errors import DataError, OutputExistsError  # noqa: F401 - re-exported

CLASS_ALIASES = {"real": 0, "0_real": 0, "fake": 1, "1_fake": 1}
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
# Formats the tf.data pipeline decodes natively; anything else Pillow reads is decoded by Pillow there.
TF_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "WEBP"}
ACCEPTED_FORMATS = TF_FORMATS | {"BMP", "TIFF", "PPM"}
MAX_PIXELS = 64_000_000  # a larger image is refused unread (decompression-bomb guard)
MAX_FILE_BYTES = 512_000_000
TF_REJECTED = "corrupt image: TensorFlow's decoder rejected it"




@dataclass
class ImageInfo:
    """What a check of one file found. ``error`` is None for a usable image."""

    path: str
    error: str | None = None
    format: str | None = None
    width: int = 0
    height: int = 0
    mode: str | None = None
    nbytes: int = 0
    sha1: str | None = None

    @property
    def tf_decodable(self) -> bool:
        return self.format in TF_FORMATS and self.mode != "CMYK"


@dataclass
class Split:
    """Checked images of one split: parallel lists of paths and labels, and the files that were skipped."""

    name: str
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    pillow_only: list[bool] = field(default_factory=list)
    pixels: list[int] = field(default_factory=list)  # width * height per image
    digests: list[str] = field(default_factory=list)  # sha1 of each file's bytes (to find test/train overlap)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    COLUMNS = ("paths", "labels", "pillow_only", "pixels", "digests")

    def counts(self) -> dict[str, int]:
        arr = np.asarray(self.labels, dtype=int)
        return {name: int((arr == i).sum()) for i, name in enumerate(CLASS_NAMES)}

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, keep: Iterable[int], name: str | None = None) -> Split:
        """A new split of the images at positions ``keep`` (in that order); ``skipped`` is not copied."""
        keep = [int(i) for i in keep]
        out = Split(name or self.name)
        for col in self.COLUMNS:
            values = getattr(self, col)
            setattr(out, col, [values[i] for i in keep] if values else [])
        return out

    def without(self, drop: Iterable[int], reason: str) -> Split:
        """A copy without the images at positions ``drop``, which join ``skipped`` with ``reason``."""
        drop = set(int(i) for i in drop)
        out = self.take(i for i in range(len(self)) if i not in drop)
        out.skipped = list(self.skipped) + [(self.paths[i], reason) for i in sorted(drop)]
        return out


def _class_dirs(folder: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = CLASS_ALIASES.get(d.name.lower())
        if label is not None:
            if label in found:
                raise DataError(f"two folders for class '{CLASS_NAMES[label]}' in {folder}: "
                                f"{found[label].name} and {d.name}")
            found[label] = d
    return found


def list_files(folder: Path) -> list[Path]:
    """All non-hidden files under ``folder``, sorted; symlinked folders are not followed (no loops)."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def archive_fingerprint(path: Path, sample: int = 1 << 20) -> str:
    """A key for an archive's extracted copy: its resolved path, size, modification time and the bytes of its
    first and last MiB (so a different archive under the same name never reuses another one's folder)."""
    path = Path(path).resolve()
    st = path.stat()
    h = hashlib.sha1(f"{path}\n{st.st_size}\n{st.st_mtime_ns}\n".encode())
    with open(path, "rb") as f:
        h.update(f.read(sample))
        if st.st_size > sample:
            f.seek(max(sample, st.st_size - sample))
            h.update(f.read(sample))
    return h.hexdigest()[:12]


def folder_fingerprint(root: Path, files: Iterable[Path]) -> str:
    """A key for data derived from a folder: its resolved path and every file's relative path, size and mtime."""
    root = Path(root).resolve()
    h = hashlib.sha1(f"{root}\n".encode())
    for f in sorted(str(p) for p in files):
        try:
            st = os.stat(f)
            h.update(f"{os.path.relpath(f, root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}\t-\n".encode())
    return h.hexdigest()[:12]


def resolve_data(path: str | Path, cache: Path | None = None, log=None) -> Path:
    """Returns a folder for ``path``: the folder itself, or an archive's contents extracted (once) to a cache.

    Extraction goes to a temporary folder renamed into place when complete, so an interrupted extraction is
    never mistaken for a finished one; members that would land outside the folder are refused.
    """
    import shutil
    import tarfile
    import tempfile
    import zipfile

    path = Path(path)
    if not path.exists():
        raise DataError(f"data not found: {path}")
    if path.is_dir():
        return path
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise DataError(f"{path} is a file, not a folder or an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    from fakedetect.paths import cache_dir

    stem = path.name
    for suf in ARCHIVE_SUFFIXES:
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    dest = (cache or cache_dir() / "datasets") / f"{stem}-{archive_fingerprint(path)}"
    if dest.is_dir():
        if log:
            log(f"reusing {dest} (extracted earlier from {path})")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"extracting {path} to {dest} (once)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if Path(name).is_absolute() or ".." in Path(name).parts:
                        raise DataError(f"{path}: refusing archive member outside the folder: {name}")
                z.extractall(tmp)
        else:
            try:
                with tarfile.open(path) as t:
                    t.extractall(tmp, filter="data")
            except tarfile.TarError as e:
                raise DataError(f"{path} is not a readable archive: {e}") from e
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def discover(root: str | Path, require_both: bool = True) -> dict[str, dict[int, list[Path]]]:
    """Finds the splits and class folders under ``root``.

    Args:
        require_both: a missing or empty class folder is an error (training); False allows one (evaluation).

    Returns:
        split name -> label -> sorted file paths. A root holding class folders directly gives one split, "all".

    Raises:
        DataError: the root is missing, has no class folders, or a class folder is missing or empty.
    """
    root = resolve_data(root)
    if not root.is_dir():
        raise DataError(f"not a folder: {root} (expected a folder holding real/ and fake/)")
    layout: dict[str, dict[int, Path]] = {}
    direct = _class_dirs(root)
    if direct:
        layout["all"] = direct
    else:
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            classes = _class_dirs(d)
            if classes:
                layout[SPLIT_ALIASES.get(d.name.lower(), d.name)] = classes
    if not layout:
        subdirs = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())[:10]) or "none"
        raise DataError(f"no class folders in {root}: expected real/ and fake/ (or 0_real/ and 1_fake/), "
                        f"directly or under train/ val/ test/. Sub-folders found: {subdirs}")
    out: dict[str, dict[int, list[Path]]] = {}
    for split, classes in layout.items():
        where = root if split == "all" else root / split
        for label, name in enumerate(CLASS_NAMES):
            if label not in classes and require_both:
                raise DataError(f"missing class folder '{name}/' in {where}")
        out[split] = {}
        for label, d in classes.items():
            files = list_files(d)
            if not files and require_both:
                raise DataError(f"class folder is empty: {d} (every class needs at least one image)")
            out[split][label] = files
        if not any(out[split].values()):
            raise DataError(f"no files in the class folders of {where}")
    return out


def choose_split(layout: dict, preferred: str, root: str | Path) -> str:
    """The split to use: ``preferred`` if present, else the folder's single split (or "all")."""
    if preferred in layout:
        return preferred
    if len(layout) == 1:
        return next(iter(layout))
    raise DataError(f"{root} has splits {', '.join(layout)} but no '{preferred}' split: "
                    "point the command at one of them")


def check_image(path: str | Path, hash_bytes: bool = False, tf_verify: bool = False) -> ImageInfo:
    """Opens and fully decodes one file with Pillow; never raises for a bad file."""
    import stat

    info = ImageInfo(str(path))
    try:
        st = os.stat(path)  # follows symlinks; a loop or a dangling link raises here
        if not stat.S_ISREG(st.st_mode):
            info.error = "not a regular file"  # a FIFO would block a read forever
            return info
        if st.st_size > MAX_FILE_BYTES:
            info.error = f"file too large ({st.st_size / 1e6:.0f} MB)"
            return info
        data = Path(path).read_bytes()
    except OSError as e:
        info.error = f"cannot read: {e.strerror or e}"
        return info
    if hash_bytes:
        info.sha1 = hashlib.sha1(data).hexdigest()
    return check_bytes(data, info, tf_verify=tf_verify)


def check_bytes(data: bytes, info: ImageInfo, on_open: Callable | None = None, tf_verify: bool = False) -> ImageInfo:
    """Fills ``info`` from encoded image bytes, fully decoding them with Pillow; never raises for bad bytes.

    Args:
        on_open: called with the open Pillow image once its format and size are accepted (to read more facts).
        tf_verify: also decode with TensorFlow's decoder the files that the pipeline will decode with it: some
            damaged JPEGs that Pillow accepts (garbage before the end marker) are refused by TensorFlow.
    """
    from PIL import Image

    info.nbytes = len(data)
    if not data:
        info.error = "empty file"
        return info
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                info.format, info.mode = im.format, im.mode
                info.width, info.height = im.size
                if info.format not in ACCEPTED_FORMATS:
                    info.error = f"unsupported image format {info.format}"
                elif info.width * info.height > MAX_PIXELS:
                    info.error = f"image too large ({info.width}x{info.height} pixels)"
                else:
                    if on_open is not None:
                        on_open(im)
                    im.load()
    except Image.DecompressionBombError as e:
        info.error = f"image too large: {e}"
    except Exception as e:  # noqa: BLE001 - any decoder failure means an unusable file
        msg = str(e).split("\n")[0] or type(e).__name__
        info.error = "not an image" if "cannot identify image file" in msg else f"corrupt image: {msg}"
    if tf_verify and info.error is None and info.tf_decodable:
        import tensorflow as tf

        try:
            tf.io.decode_image(data, channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
            reason = (e.message or type(e).__name__).split(". ")[0].split("] ")[-1]
            info.error = f"{TF_REJECTED} ({reason})"
    return info


def check_images(paths: Iterable[str | Path], hash_bytes: bool = False, workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None, tf_verify: bool = False) -> list[ImageInfo]:
    """Checks many files in threads (Pillow's decoders release the GIL); keeps the input order."""
    paths = list(paths)
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    out: list[ImageInfo] = []
    with ThreadPoolExecutor(workers) as ex:
        for i, info in enumerate(ex.map(lambda p: check_image(p, hash_bytes, tf_verify), paths, chunksize=64)):
            out.append(info)
            if progress and ((i + 1) % 1000 == 0 or i + 1 == len(paths)):
                progress(i + 1, len(paths))
    return out


def subsample(files: dict[int, list[Path]], max_per_class: int | None, seed: int) -> dict[int, list[Path]]:
    """At most ``max_per_class`` files per class, drawn with a fixed seed (a stratified subset)."""
    if max_per_class is None:
        return files
    rng = np.random.default_rng(seed)
    out = {}
    for label, paths in files.items():
        if len(paths) > max_per_class:
            idx = np.sort(rng.choice(len(paths), max_per_class, replace=False))
            paths = [paths[i] for i in idx]
        out[label] = paths
    return out


def to_split(name: str, files: dict[int, list[Path]], progress=None, require_both: bool = True) -> Split:
    """Checks the files of one split and keeps the usable ones; an emptied class is an error if ``require_both``."""
    flat = [(p, label) for label in sorted(files) for p in files[label]]
    infos = check_images([p for p, _ in flat], hash_bytes=True, progress=progress, tf_verify=True)
    split = Split(name)
    for (_, label), info in zip(flat, infos, strict=True):
        if info.error:
            split.skipped.append((info.path, info.error))
        else:
            split.paths.append(info.path)
            split.labels.append(label)
            split.pillow_only.append(not info.tf_decodable)
            split.pixels.append(info.width * info.height)
            split.digests.append(info.sha1)
    for label, n in enumerate(split.counts().values()):
        if n == 0 and (require_both or not split.paths):
            raise DataError(f"no readable '{CLASS_NAMES[label]}' image in split '{name}' "
                            f"({len(files.get(label, []))} files, all unreadable)")
    return split


def carve_validation(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Stratified train/validation split of ``split`` with a fixed seed (at least one image per class)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.labels)
    val_idx = []
    for label in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == label)
        if len(idx) < 2:
            raise DataError(f"class '{CLASS_NAMES[label]}' has {len(idx)} readable image(s): "
                            "need at least 2 to carve a validation split")
        n_val = min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        val_idx.extend(rng.permutation(idx)[:n_val].tolist())
    val_set = set(val_idx)
    train = split.take((i for i in range(len(split)) if i not in val_set), "train")
    val = split.take((i for i in range(len(split)) if i in val_set), "val")
    train.skipped = list(split.skipped)
    return train, val


def digest_ids(digests: Iterable[str]) -> np.ndarray:
    """Compact content ids: the first 64 bits of each sha1, as unsigned integers (collisions are negligible)."""
    return np.array([int(d[:16], 16) for d in digests], dtype=np.uint64)


def write_holdout_split(root: str | Path, dest: str | Path, test_fraction: float = 0.2, seed: int = 42,
                        copy: bool = False) -> dict[str, dict[str, int]]:
    """Lays out ``dest/{train,test}/{real,fake}`` from a folder without splits: a stratified, seeded hold-out.

    Files are symlinked (or copied with ``copy``), never moved; ``dest`` must not exist yet.

    Returns:
        split -> class -> number of files.
    """
    import shutil

    layout = discover(root)
    if list(layout) != ["all"] and len(layout) != 1:
        raise DataError(f"{root} is already split ({', '.join(layout)})")
    files = next(iter(layout.values()))
    dest = Path(dest)
    if dest.exists():
        raise OutputExistsError(f"{dest} already exists; choose another --out")
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for label, paths in files.items():
        order = rng.permutation(len(paths))
        n_test = max(1, round(len(paths) * test_fraction))
        for split, idx in (("test", order[:n_test]), ("train", order[n_test:])):
            d = tmp / split / CLASS_NAMES[label]
            d.mkdir(parents=True, exist_ok=True)
            for i in idx:
                src = Path(paths[i]).resolve()
                target = d / src.name
                if target.exists():  # same name in two sub-folders of one class
                    target = d / f"{i}_{src.name}"
                if copy:
                    shutil.copy2(src, target)
                else:
                    target.symlink_to(src)
            counts[split][CLASS_NAMES[label]] = len(idx)
    tmp.rename(dest)
    return counts
