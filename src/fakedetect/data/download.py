"""Downloading public data sets through their host's own client library."""

from __future__ import annotations

from pathlib import Path

from fakedetect.errors import DataError

#: CIFAKE (Bird & Lotfi, 2023) on Kaggle: train/ and test/, each with REAL/ and FAKE/.
DATASETS = {"cifake": "birdy654/cifake-real-and-ai-generated-synthetic-images"}


def download(name: str) -> Path:
    """Downloads a data set with Kaggle's ``kagglehub`` client (cached by kagglehub) and returns its folder.

    Raises:
        DataError: unknown name, kagglehub missing, or the download failed (offline, no credentials...).
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    try:
        import kagglehub
    except ImportError:
        raise DataError("downloading uses Kaggle's client library, which is not installed: "
                        "pip install kagglehub (then run again), or give a local copy with --data PATH") from None
    try:
        return Path(kagglehub.dataset_download(DATASETS[name]))
    except Exception as e:  # noqa: BLE001 - network, credentials and HTTP errors all end the same way
        raise DataError(f"could not download {name} from Kaggle ({type(e).__name__}: {e}).\n"
                        "If this machine is offline, copy the data set here and pass --data PATH (a folder with "
                        "real/ and fake/, or an archive of one).") from e
