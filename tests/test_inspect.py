"""`playstream inspect` tells provenance one way for a chunk, an embedded export and a
finalizer-style dataset (a version folder, the dataset folder through `current`, a shard)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from playstream.compaction import read_manifest
from playstream.dataset import NPZDatasetWriter, load_npz_dataset
from playstream.gamefiles import JsonlWriter
from playstream.selfplay import generate_records

CLI = [sys.executable, "-m", "playstream.cli"]


def run(*args: str | Path) -> str:
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, int]:
    """Two game files exported into one chunk store (two source streams), an embedded
    export of it and a dataset directory compacted from the same chunks."""
    tmp = tmp_path_factory.mktemp("inspect")
    files = []
    for i, seed in enumerate((1, 2)):
        path = tmp / f"games{i}.jsonl"
        with JsonlWriter(path) as out:
            for record in generate_records(board_type="square8", num_players=2, agent="random",
                                           seed=seed, count=4):
                out.write(record)
        files.append(path)
    chunks = tmp / "chunks"
    run("export", "--jsonl", files[0], "--jsonl", files[1], "--board-type", "square8",
        "--num-players", "2", "--output", tmp / "e.npz", "--chunks", chunks, "--chunk-rows",
        "50", "--no-progress")
    run("compact", "--chunks", chunks, "--output", tmp / "ds", "--shard-rows", "100")
    return tmp, chunks, files[0], len(list(chunks.glob("*/*.npz")))


def source_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("  source ")]


def test_a_chunk_names_its_file_and_range(exported: tuple[Path, Path, Path, int]) -> None:
    _, chunks, first_file, _ = exported
    chunk = sorted(p for p in chunks.glob("*/*.npz") if "games0" in p.name)[0]
    out = run("inspect", chunk)
    assert "provenance of this chunk: 1 chunk(s) from 1 source stream(s)" in out
    [line] = source_lines(out)
    first, last = chunk.stem.split("+")[1:]
    assert line.startswith(f"  source file {first_file.resolve()} (stream ")
    assert f": positions {int(first)}..{int(last)}; 1 chunk(s), " in line
    assert f"  chunk {chunk.name}  rows=" in out and "  sealed_at 20" in out


def test_export_and_dataset_show_the_same_provenance(exported: tuple[Path, Path, Path, int]
                                                     ) -> None:
    tmp, _, first_file, n_chunks = exported
    embedded = run("inspect", tmp / "e.npz")
    folder = run("inspect", tmp / "ds")
    version = tmp / "ds" / (tmp / "ds" / "current").readlink()
    shard = sorted(version.glob("*.npz"))[0]
    from_version, from_shard = run("inspect", version), run("inspect", shard)
    assert "provenance of this export: " in embedded and "provenance of this dataset " in folder
    heading = f"{n_chunks} chunk(s) from 2 source stream(s)"
    for out in (embedded, folder, from_version, from_shard):
        assert heading in out and "{}" not in out
    # every view lists the same sources (both game files, every position) and chunks
    sources = source_lines(embedded)
    assert len(sources) == 2 and f"source file {first_file.resolve()} " in sources[0] + sources[1]
    assert all(": positions 1..4; " in line for line in sources)
    for out in (folder, from_version, from_shard):
        assert source_lines(out) == sources
        assert [ln for ln in out.splitlines() if ln.startswith("  chunk ")] == \
            [ln for ln in embedded.splitlines() if ln.startswith("  chunk ")]
    # the directory view also shows what the manifest totals and files are
    totals = read_manifest(tmp / "ds")["totals"]
    assert json.dumps(totals, indent=2) in folder
    assert f"train {shard.name}  rows=" in from_version


def test_a_file_without_provenance_says_so(exported: tuple[Path, Path, Path, int],
                                          tmp_path: Path) -> None:
    tmp = exported[0]
    dataset = load_npz_dataset(tmp / "e.npz")
    with NPZDatasetWriter(tmp_path / "plain.npz", dataset.config) as writer:
        writer.write(dataset.rows)
    assert "provenance: none recorded" in run("inspect", tmp_path / "plain.npz")
