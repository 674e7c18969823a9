"""Bad input gets a clear answer: an export of nothing exits 1 with the counts by reason,
every skipped record is named (where, game_id, field, reason) on stderr and in the rejects
file, an illegal move is caught by record validation, and `inspect | head` is quiet."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from playstream.cli.main import main
from playstream.compaction import read_manifest
from playstream.dataset import read_metadata
from playstream.gamefiles import JsonlWriter
from playstream.records import GameRecord
from playstream.selfplay import generate_records

CLI = [sys.executable, "-m", "playstream"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def export(source: Path, out: Path, *extra: str | Path, players: int = 2
           ) -> subprocess.CompletedProcess[str]:
    return run("export", "--jsonl", source, "--board-type", "square8", "--num-players",
               str(players), "--output", out, "--no-progress", *extra)


@pytest.fixture(scope="module")
def records() -> list[GameRecord]:
    return list(generate_records(board_type="square8", num_players=2, agent="random", seed=11,
                                 count=6, node="t"))


def write(path: Path, records: list[GameRecord]) -> Path:
    with JsonlWriter(path) as out:
        for r in records:
            out.write(r)
    return path


def test_garbage_input_exits_1_with_counts_by_reason(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('not json\n{"game_id": "x"}\n[1, 2]\n{"also": "bad"\n')
    proc = export(garbage, tmp_path / "out.npz")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error:" in proc.stderr and "no rows to publish" in proc.stderr
    assert "skipped 3: invalid record" in proc.stderr and "skipped 1: invalid board_type" \
        in proc.stderr
    assert not (tmp_path / "out.npz").exists()  # nothing that validate would pass
    allowed = export(garbage, tmp_path / "empty.npz", "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
    assert read_metadata(tmp_path / "empty.npz")["rows"] == 0


def test_wrong_configuration_exits_1_with_counts_by_reason(tmp_path: Path,
                                                           records: list[GameRecord]) -> None:
    games = write(tmp_path / "g.jsonl", records)
    proc = export(games, tmp_path / "out.npz", players=3)
    assert proc.returncode == 1
    assert f"skipped {len(records)}: other configuration" in proc.stderr
    assert "field=num_players: other configuration: num_players is 2" in proc.stderr
    # compact of those chunks alone fails the same way, and passes with --allow-empty
    chunks = tmp_path / "out.npz.chunks"
    again = run("compact", "--chunks", chunks, "--output", tmp_path / "c.npz", "--no-progress")
    assert again.returncode == 1 and f"{len(records)} records skipped" in again.stderr
    assert run("compact", "--chunks", chunks, "--output", tmp_path / "c.npz", "--no-progress",
               "--allow-empty").returncode == 0


def test_one_bad_line_is_named_on_stderr_and_in_the_rejects_file(
        tmp_path: Path, records: list[GameRecord]) -> None:
    lines = [r.to_json_line() for r in records]
    broken = json.loads(lines[2])
    broken["winner"] = "nobody"
    lines[2] = json.dumps(broken)
    source = tmp_path / "games.jsonl"
    source.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    proc = export(source, tmp_path / "out.npz", "--rejects", rejects)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1: invalid winner" in proc.stdout
    assert (f"rejected: file={source} line=3 game_id={records[2].game_id} field=winner: "
            in proc.stderr)
    assert [json.loads(x) for x in rejects.read_text().splitlines()] == [{
        "file": str(source), "line": 3, "game_id": records[2].game_id, "field": "winner",
        "reason": json.loads(rejects.read_text())["reason"]}]
    # validate of the game file names the same record, in the same form
    check = run("validate", "--jsonl", source, "--rejects", tmp_path / "v.jsonl")
    assert check.returncode == 1
    assert json.loads((tmp_path / "v.jsonl").read_text())["line"] == 3


def test_only_the_first_rejects_are_shown_all_are_written(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("x\n" * 12)
    rejects = tmp_path / "r.jsonl"
    proc = export(garbage, tmp_path / "o.npz", "--rejects", rejects, "--allow-empty")
    assert proc.stderr.count("rejected: file=") == 5
    assert f"... and 7 more (all 12 in {rejects})" in proc.stderr
    assert [json.loads(x)["line"] for x in rejects.read_text().splitlines()] == list(
        range(1, 13))


def test_an_illegal_move_is_rejected_by_record_validation(tmp_path: Path) -> None:
    """Also for a record with search statistics: validation blames moves[3], not search."""
    good = next(generate_records(board_type="square8", num_players=2, agent="mcts", seed=1,
                                 count=1, simulations=4, node="t"))
    data = good.model_dump(mode="json")
    data["moves"][3] = data["moves"][1]
    source = tmp_path / "illegal.jsonl"
    source.write_text(json.dumps(data) + "\n")
    check = run("validate", "--jsonl", source)
    assert check.returncode == 1 and "field=moves[3]" in check.stdout
    rejects = tmp_path / "r.jsonl"
    proc = export(source, tmp_path / "o.npz", "--rejects", rejects)
    assert proc.returncode == 1
    reject = json.loads(rejects.read_text())
    assert (reject["field"], reject["line"]) == ("moves[3]", 1)
    assert "occupied" in reject["reason"]


def test_inspect_into_a_closed_pipe_exits_0_quietly(tmp_path: Path,
                                                    records: list[GameRecord]) -> None:
    games = write(tmp_path / "g.jsonl", records)
    assert export(games, tmp_path / "d.npz").returncode == 0
    exe = shutil.which("playstream", path=str(Path(sys.executable).parent))
    assert exe is not None
    # `head -1` as a user types it; `true` closes the pipe before the first write, so the
    # broken pipe is certain, not a race with the pipe buffer.
    for reader in ("head -1", "true"):
        proc = subprocess.run(["bash", "-c", f"set -o pipefail; '{exe}' inspect "
                               f"'{tmp_path / 'd.npz'}' | {reader}"],
                              capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stderr) == (0, ""), (reader, proc.stderr)


def test_every_option_of_every_command_has_help() -> None:
    missing = [f"{name} {'/'.join(param.opts)}"
               for name, command in main.commands.items() for param in command.params
               if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert missing == []
    assert len(main.commands) >= 12


def test_two_workers_with_one_seed_play_disjoint_games_and_a_rerun_reproduces() -> None:
    def moves(worker: str) -> list[tuple[int, ...]]:
        return [tuple(r.moves) for r in generate_records(
            board_type="square8", num_players=2, agent="random", seed=7, count=30,
            node="n", worker=worker)]

    a, b = moves("a"), moves("b")
    assert len(set(a)) == 30 and not set(a) & set(b)
    assert moves("a") == a  # a rerun of one worker plays exactly its own games again


def test_duplicate_move_sequences_are_counted_and_dropped(tmp_path: Path,
                                                          records: list[GameRecord]) -> None:
    copies = [r.model_copy(update={"game_id": f"copy-{i}"}) for i, r in enumerate(records[:2])]
    source = write(tmp_path / "g.jsonl", records + copies)
    check = run("validate", "--jsonl", source)
    assert check.returncode == 0  # a warning, not a failure
    assert "move sequences unique: WARNING 2 games repeat" in check.stdout
    assert '"duplicate_move_sequences": 2' in check.stdout

    out = tmp_path / "ds"
    proc = export(source, out)
    assert proc.returncode == 0, proc.stderr
    assert "duplicate_moves=2" in proc.stdout and f"dataset_games={len(records) + 2}" \
        in proc.stdout
    assert "warning: 2 games repeat the move sequence" in proc.stderr
    assert read_manifest(out)["totals"]["duplicate_moves"] == 2
    dropped = export(source, tmp_path / "dropped", "--drop-duplicate-moves")
    assert f"dataset_games={len(records)} " in dropped.stdout, dropped.stdout
    manifest = read_manifest(tmp_path / "dropped")
    assert manifest["totals"]["duplicate_moves"] == 2
    assert manifest["totals"]["games"] == len(records)
