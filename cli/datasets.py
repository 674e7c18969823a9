"""`validate` (pass/fail per check, non-zero exit on any failure) and `inspect`."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable

import click

from playstream.cli.common import RejectLog, human_bytes, reports_errors
from playstream.cli.options import rejects_option
from playstream.compaction.provenance import provenance_of
from playstream.compaction.publish import read_manifest
from playstream.dataset import CheckResult, read_metadata, validate_npz_dataset
from playstream.dataset.archive import Archive
from playstream.quality import check_game_file, dataset_statistics


def _print_checks(results: Iterable[CheckResult]) -> bool:
    ok = True
    for r in results:
        ok &= r.ok
        where = "".join(f" {k}={v}" for k, v in (("array", getattr(r, "array", None)),
                                                  ("row", getattr(r, "row", None)))
                        if v is not None)
        click.echo(f"{'PASS' if r.ok else 'FAIL'}  {r.name}{where}: {r.message}")
    return ok


@click.command("validate")
@click.argument("npz", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Validate a game database (or JSONL file) instead of a dataset.")
@click.option("--jsonl", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Validate a JSONL game file instead of a dataset.")
@click.option("--detailed", is_flag=True,
              help="Add per-channel statistics and value, entropy and game-length distributions.")
@rejects_option
@reports_errors
def validate_cmd(npz: Path | None, db: Path | None, jsonl: Path | None, detailed: bool,
                 rejects_path: Path | None) -> None:
    """Check a dataset (or a game file); exit 1 if any check fails."""
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
    vreport = validate_npz_dataset(npz)
    ok = _print_checks(vreport.results)
    if detailed and ok:
        click.echo(json.dumps(dataset_statistics(npz), indent=2))
    click.echo(f"{'valid' if ok else 'INVALID'}: {npz}")
    sys.exit(0 if ok else 1)


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@reports_errors
def inspect_cmd(path: Path) -> None:
    """Shapes, dtypes, metadata and provenance of a dataset file or chunk, without loading
    its arrays; for a dataset directory (a version folder, or the folder whose `current` link
    names one), its manifest's totals, files and provenance."""
    if path.is_dir():
        manifest = read_manifest(path)
        click.echo(f"{path}  dataset {manifest.get('config_key')}")
        click.echo(json.dumps(manifest.get("totals", {}), indent=2))
        for out in manifest.get("outputs", []):
            click.echo(f"  {out.get('split'):5} {out.get('file')}  rows={out.get('rows')} "
                       f"games={out.get('games')}")
    else:
        _describe_file(path)
    provenance = provenance_of(path)
    if provenance is None:
        click.echo("provenance: none recorded")
    else:
        for line in provenance.lines():
            click.echo(line)


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
