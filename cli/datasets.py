"""`validate` (pass/fail per check, non-zero exit on any failure) and `inspect`."""
from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import click

from playstream.cli.common import RejectLog, human_bytes, reports_errors
from playstream.cli.options import StoreLocation, rejects_option
from playstream.compaction.provenance import Provenance, manifest_provenance, provenance_of
from playstream.compaction.publish import read_manifest
from playstream.dataset import CheckResult, read_metadata, validate_npz_dataset
from playstream.dataset.archive import Archive
from playstream.errors import DatasetError
from playstream.quality import check_game_file, dataset_statistics
from playstream.storage import download


def _print_checks(results: Iterable[CheckResult]) -> bool:
    ok = True
    for r in results:
        ok &= r.ok
        where = "".join(f" {k}={v}" for k, v in (("array", getattr(r, "array", None)),
                                                  ("row", getattr(r, "row", None)))
                        if v is not None)
        click.echo(f"{'PASS' if r.ok else 'FAIL'}  {r.name}{where}: {r.message}")
    return ok


@contextlib.contextmanager
def _readable(target: Path | str) -> Iterator[Path]:
    """A local file for a dataset file named by a path or an ``s3://`` URL: an object is
    downloaded into a temp folder (removed afterwards), since the readers take a file."""
    if isinstance(target, Path):
        yield target
        return
    with tempfile.TemporaryDirectory(prefix="playstream-read-") as tmp:
        yield download(target, Path(tmp))


@click.command("validate")
@click.argument("npz", required=False, type=StoreLocation())
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Validate a game database (or JSONL file) instead of a dataset.")
@click.option("--jsonl", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Validate a JSONL game file instead of a dataset.")
@click.option("--detailed", is_flag=True,
              help="Add per-channel statistics and value, entropy and game-length distributions.")
@rejects_option
@reports_errors
def validate_cmd(npz: Path | str | None, db: Path | None, jsonl: Path | None, detailed: bool,
                 rejects_path: Path | None) -> None:
    """Check a dataset file (a path or s3://BUCKET/KEY.npz) or a game file; exit 1 if any
    check fails."""
    given = [p for p in (npz, db, jsonl) if p is not None]
    if len(given) != 1:
        raise click.UsageError("give one of a dataset file, --db FILE or --jsonl FILE")
    if npz is None:
        with RejectLog(rejects_path) as rejects:
            report = check_game_file(given[0], on_reject=rejects.add)
        ok = _print_checks(report.results)
        if detailed or report.stats:
            click.echo(json.dumps(report.stats, indent=2))
        sys.exit(0 if ok else 1)
    if rejects_path is not None:
        raise click.UsageError("--rejects lists skipped game records: use it with --db/--jsonl")
    assert npz is not None
    with _readable(npz) as local:
        vreport = validate_npz_dataset(local)
        ok = _print_checks(vreport.results)
        if detailed and ok:
            click.echo(json.dumps(dataset_statistics(local), indent=2))
    click.echo(f"{'valid' if ok else 'INVALID'}: {npz}")
    sys.exit(0 if ok else 1)


@click.command("inspect")
@click.argument("path", type=StoreLocation(must_exist=True))
@reports_errors
def inspect_cmd(path: Path | str) -> None:
    """Shapes, dtypes, metadata and provenance of a dataset file or chunk, without loading
    its arrays; for a dataset directory (a version folder, or the folder whose `current` link
    names one), its manifest's totals, files and provenance. PATH may be an s3:// URL of a
    file, a dataset or a version."""
    if isinstance(path, Path) and path.is_dir() or isinstance(path, str) \
            and not path.endswith(".npz"):
        manifest = read_manifest(path)
        click.echo(f"{path}  dataset {manifest.get('config_key')}")
        click.echo(json.dumps(manifest.get("totals", {}), indent=2))
        for out in manifest.get("outputs", []):
            click.echo(f"  {out.get('split'):5} {out.get('file')}  rows={out.get('rows')} "
                       f"games={out.get('games')}")
        provenance = (provenance_of(path) if isinstance(path, Path)
                      else manifest_provenance(manifest))
    else:
        with _readable(path) as local:
            _describe_file(local)
            provenance = provenance_of(local)
            if provenance is None and isinstance(path, str):
                provenance = _version_provenance(path)
    if provenance is None:
        click.echo("provenance: none recorded")
    else:
        for line in provenance.lines():
            click.echo(line)


def _version_provenance(url: str) -> Provenance | None:
    """The provenance of a shard on an object store: the manifest of its version prefix."""
    try:
        return manifest_provenance(read_manifest(url.rpartition("/")[0]))
    except DatasetError:
        return None


def _describe_file(npz: Path) -> None:
    meta = read_metadata(npz)
    click.echo(f"{npz}  {human_bytes(npz.stat().st_size)}")
    with Archive(npz) as archive:
        for name in sorted(n for n in archive.infos if n != "metadata"):
            member = archive.read_header(name)
            click.echo(f"  {member.name:16} {str(member.dtype):8} {member.shape}")
    storage = meta.get("feature_storage")
    if isinstance(storage, dict):  # format 2: the planes a reader rebuilds from the members
        rows, channels = meta.get("rows"), len(meta.get("channels", []))
        kinds = ", ".join(f"{len(storage.get(k, []))} {k}" for k in ("bits", "float", "constant"))
        click.echo(f"  {'features':16} {'float32':8} ({rows}, {channels}, {meta.get('height')}, "
                   f"{meta.get('width')})  as read: {kinds} channels")
    shown = {k: v for k, v in meta.items() if k not in ("channels", "checksums", "extra")}
    click.echo(json.dumps(shown, indent=2))
    channels = meta.get("channels", [])
    more = " ..." if len(channels) > 8 else ""
    click.echo(f"channels ({len(channels)}): {', '.join(channels[:8])}{more}")
