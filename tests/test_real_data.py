"""On the project's real data in ../shared/data (skipped where it is absent)."""

import pytest

from fakedetect.data.archive import resolve_data
from fakedetect.data.inspect import inspect_data

pytestmark = pytest.mark.data


@pytest.mark.slow  # 100,000 images: ~45 s of the default run; the faces archive below is inspected by default
def test_inspect_cifake_archive(shared_data, tmp_path):
    report = inspect_data(resolve_data(shared_data / "cifake-train.tar.gz"))
    assert report.counts == {"train": {"real": 50000, "fake": 50000}}
    assert report.unreadable == []
    assert report.formats == {"real": {"JPEG": 50000}, "fake": {"JPEG": 50000}}
    assert report.sizes["real"]["max"] == "32x32"
    assert report.duplicates["groups"] > 500 and report.duplicates["across_classes"] == 0


def test_inspect_faces_flags_the_format_trap(shared_data):
    report = inspect_data(resolve_data(shared_data / "faces-main.tar.gz"))
    assert report.counts == {"main": {"real": 2000, "fake": 2000}}
    assert report.formats == {"real": {"PNG": 2000}, "fake": {"JPEG": 2000}}
    assert any("different file formats" in w for w in report.warnings)
