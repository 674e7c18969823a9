"""The embedded path end to end: selfplay → export (chunks + finalizer) → validate.

Runs the real `playstream` console script in subprocesses, so exit codes, messages and a
SIGKILL in the middle of an export are tested as a user meets them.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from playstream.dataset import load_npz_dataset, read_metadata
from playstream.gamefiles import GameDatabase, JsonlWriter
from playstream.games import get_game
from playstream.records import GameRecord
from playstream.selfplay import generate_records

CLI = [sys.executable, "-m", "playstream.cli"]


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def expected_keys(records: list[GameRecord], sample_every: int = 1) -> Counter[tuple[str, int]]:
    return Counter((r.game_id, m) for r in records for m in range(0, len(r.moves), sample_every))


def dataset_keys(path: Path) -> Counter[tuple[str, int]]:
    rows = load_npz_dataset(path).rows
    return Counter(zip(rows.game_id.tolist(), rows.move_number.tolist()))


def sorted_rows(path: Path) -> dict[str, np.ndarray]:
    rows = load_npz_dataset(path).rows
    order = np.lexsort((rows.move_number, rows.game_id))
    taken = rows.take(order)
    return {name: getattr(taken, name) for name in ("features", "globals", "values",
                                                     "values_mp", "policy_indptr",
                                                     "policy_indices", "policy_values",
                                                     "game_id", "move_number", "player")}


@pytest.fixture(scope="module")
def games(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[GameRecord]]:
    d = tmp_path_factory.mktemp("games")
    mcts = list(generate_records(board_type="square8", num_players=2, agent="mcts", seed=3,
                                 count=12, simulations=8, node="t"))
    rand = list(generate_records(board_type="square8", num_players=2, agent="random", seed=4,
                                 count=25, node="t"))
    other = list(generate_records(board_type="hex8", num_players=3, agent="random", seed=5,
                                  count=5, node="t"))
    with JsonlWriter(d / "games.jsonl") as w:
        for r in mcts + other:
            w.write(r)
    with GameDatabase(d / "games.db") as db:
        for r in rand:
            db.write(r)
    return d / "games.jsonl", d / "games.db", mcts + rand


def test_selfplay_writes_both_formats(tmp_path: Path) -> None:
    for name in ("a.jsonl", "a.db"):
        proc = run("selfplay", "--board-type", "hex8", "--num-players", "3", "--games", "3",
                   "--agent", "random", "--output", tmp_path / name)
        assert "games=3" in proc.stdout
        assert run("validate", "--db", tmp_path / name).returncode == 0
    bad = run("selfplay", "--board-type", "hex8", "--num-players", "3", "--games", "1",
              "--output", tmp_path / "a.txt", check=False)
    assert bad.returncode == 1 and "must end in .jsonl or .db" in bad.stderr


def test_export_equals_chunks_plus_compact(tmp_path: Path, games) -> None:
    jsonl, db, records = games
    out = tmp_path / "out.npz"
    proc = run("export", "--jsonl", jsonl, "--db", db, "--board-type", "square8",
               "--num-players", "2", "--output", out, "--chunk-rows", "97", "--no-progress")
    assert "games=37" in proc.stdout and "skipped=5" in proc.stdout
    assert "other configuration" in proc.stdout
    assert dataset_keys(out) == expected_keys(records)
    assert run("validate", out).returncode == 0
    # the same games through differently sized chunks and an ad-hoc compaction
    chunks = tmp_path / "chunks"
    run("export", "--jsonl", jsonl, "--db", db, "--board-type", "square8", "--num-players", "2",
        "--output", tmp_path / "other.npz", "--chunks", chunks, "--chunk-rows", "1000",
        "--no-progress")
    run("compact", "--chunks", chunks, "--output", tmp_path / "compacted.npz", "--no-progress")
    a, b = sorted_rows(out), sorted_rows(tmp_path / "compacted.npz")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    manifest = read_metadata(out)["extra"]["manifest"]
    assert sum(c["rows_used"] for c in manifest["chunks"]) == sum(expected_keys(records).values())


def test_rerun_only_encodes_new_games(tmp_path: Path, games) -> None:
    jsonl, _, _ = games
    grow = tmp_path / "grow.jsonl"
    lines = jsonl.read_text().splitlines(keepends=True)
    grow.write_text("".join(lines[:6]))
    out = tmp_path / "grow.npz"
    args = ("export", "--jsonl", grow, "--board-type", "square8", "--num-players", "2",
            "--output", out, "--chunk-rows", "50", "--no-progress")
    assert "games=6 " in run(*args).stdout
    grow.write_text("".join(lines[:12]))
    second = run(*args).stdout
    assert "games=6 " in second and "dataset_games=12" in second
    records = [GameRecord.model_validate_json(line) for line in lines[:12]]
    assert dataset_keys(out) == expected_keys(records)


def test_sigkill_mid_export_then_rerun_is_exactly_once(tmp_path: Path) -> None:
    src = tmp_path / "big.jsonl"
    records = list(generate_records(board_type="square19", num_players=2, agent="random",
                                    seed=9, count=60, node="k"))
    with JsonlWriter(src) as w:
        for r in records:
            w.write(r)
    out, chunks = tmp_path / "big.npz", tmp_path / "big.npz.chunks"
    args = [*CLI, "export", "--jsonl", str(src), "--board-type", "square19", "--num-players",
            "2", "--output", str(out), "--chunk-rows", "400", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        sealed = list(chunks.glob("*/*.npz"))
        if len(sealed) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "export finished before it could be killed; make it bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    sealed_before = sorted(p.name for p in chunks.glob("*/*.npz"))
    assert 2 <= len(sealed_before)
    rerun = run(*args[3:])
    assert rerun.returncode == 0
    assert run("validate", out).returncode == 0
    assert dataset_keys(out) == expected_keys(records)  # no duplicate, no missing row
    after = sorted(p.name for p in chunks.glob("*/*.npz"))
    assert set(sealed_before) <= set(after)
    assert not [p for p in chunks.rglob("*") if ".tmp" in p.name]


def test_export_options_sample_and_min_moves(tmp_path: Path, games) -> None:
    jsonl, db, records = games
    out = tmp_path / "s.npz"
    run("export", "--db", db, "--board-type", "square8", "--num-players", "2", "--output", out,
        "--sample-every", "3", "--min-moves", "30", "--dense-policy", "--no-progress")
    db_records = [r for r in records if r.source.agent == "random" and len(r.moves) >= 30]
    assert dataset_keys(out) == expected_keys(db_records, sample_every=3)
    data = np.load(out, allow_pickle=False)
    assert data["policy"].shape == (sum(expected_keys(db_records, 3).values()), 64)


@pytest.mark.parametrize("corruption", ["truncate", "flip", "nan", "policy_sum", "n_mismatch"])
def test_validate_catches_corruption(tmp_path: Path, games, corruption: str) -> None:
    jsonl, db, _ = games
    good = tmp_path / "good.npz"
    run("export", "--db", db, "--board-type", "square8", "--num-players", "2",
        "--output", good, "--no-progress")
    bad = tmp_path / "bad.npz"
    if corruption in ("truncate", "flip"):
        data = bytearray(good.read_bytes())
        if corruption == "truncate":
            data = data[: len(data) * 2 // 3]
        else:
            data[len(data) // 2] ^= 0xFF
        bad.write_bytes(bytes(data))
    else:
        arrays = dict(np.load(good, allow_pickle=False))
        if corruption == "nan":
            arrays["values"][5] = np.nan
        elif corruption == "policy_sum":
            arrays["policy_values"][arrays["policy_indptr"][7]] += 0.5
        else:
            arrays["values"] = arrays["values"][:-1]
        np.savez(bad, **arrays)
    proc = run("validate", bad, check=False)
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "INVALID" in proc.stdout
    expected = {"truncate": "zip", "flip": "", "nan": "finite", "policy_sum": "policy",
                "n_mismatch": "shapes"}[corruption]
    assert any(line.startswith(f"FAIL  {expected}") for line in proc.stdout.splitlines())


def test_bad_inputs_give_clear_errors(tmp_path: Path, games) -> None:
    jsonl, db, _ = games
    base = ("--board-type", "square8", "--num-players", "2", "--no-progress")
    missing = run("export", "--db", tmp_path / "nope.db", "--output", tmp_path / "o.npz", *base,
                  check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    proc = run("export", "--db", garbage, "--output", tmp_path / "o.npz", *base, check=False)
    assert proc.returncode == 1 and "garbage.db" in proc.stderr
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE games (id INTEGER)")
    proc = run("validate", "--db", foreign, check=False)
    assert proc.returncode == 1 and "not a playstream game database" in proc.stdout
    proc = run("export", "--db", db, "--output", jsonl / "o.npz", *base, check=False)
    assert proc.returncode == 1 and "error:" in proc.stderr and str(jsonl) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_truncated_chunk_is_quarantined(tmp_path: Path, games) -> None:
    _, db, records = games
    out, chunks = tmp_path / "q.npz", tmp_path / "chunks"
    run("export", "--db", db, "--board-type", "square8", "--num-players", "2", "--output", out,
        "--chunks", chunks, "--chunk-rows", "200", "--no-progress")
    victim = sorted(chunks.glob("*/*.npz"))[0]
    victim_games = set(read_metadata(victim)["extra"]["games"])
    victim.write_bytes(victim.read_bytes()[:1000])
    proc = run("compact", "--chunks", chunks, "--output", tmp_path / "q2.npz", "--no-progress")
    assert "quarantined" in proc.stdout
    assert (chunks / "quarantine" / victim.parent.name / victim.name).exists()
    assert (chunks / "quarantine" / victim.parent.name / f"{victim.name}.reason.json").exists()
    kept = [r for r in records if r.source.agent == "random" and r.game_id not in victim_games]
    assert dataset_keys(tmp_path / "q2.npz") == expected_keys(kept)


def test_mixed_configurations_are_refused(tmp_path: Path, games) -> None:
    jsonl, _, _ = games
    chunks = tmp_path / "chunks"
    for fv in ("v1", "v2"):
        run("export", "--jsonl", jsonl, "--board-type", "square8", "--num-players", "2",
            "--output", tmp_path / f"{fv}.npz", "--chunks", chunks, "--feature-version", fv,
            "--no-progress")
    proc = run("compact", "--chunks", chunks, "--output", tmp_path / "mixed.npz",
               "--no-progress", check=False)
    assert proc.returncode == 1
    assert "v1" in proc.stderr and "v2" in proc.stderr


def test_discovery_follows_the_naming_convention(tmp_path: Path, games) -> None:
    jsonl, db, records = games
    root = tmp_path / "nodes"
    (root / "node1").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "node1" / "square8_2p_a.db").write_bytes(db.read_bytes())
    (root / "node1" / "mixed.jsonl").write_text(jsonl.read_text())
    (root / "hex8_3p_b.db").write_bytes(b"never opened: its tag names another configuration")
    (root / ".hidden" / "square8_2p.db").write_bytes(b"never opened: hidden folder")
    out = tmp_path / "d.npz"
    proc = run("export", "--use-discovery", root, "--board-type", "square8", "--num-players",
               "2", "--output", out, "--no-progress")
    assert "games=37" in proc.stdout
    assert dataset_keys(out) == expected_keys(records)


def test_changing_only_window_or_split_recompacts_without_encoding(tmp_path: Path,
                                                                    games) -> None:
    _, db, records = games
    out = tmp_path / "w.npz"
    base = ("export", "--db", db, "--board-type", "square8", "--num-players", "2",
            "--no-progress")
    first = run(*base, "--output", out).stdout
    assert "games=25 " in first
    chunks_before = sorted((tmp_path / "w.npz.chunks").rglob("*.npz"))
    second = run(*base, "--output", out, "--window", "100").stdout
    assert "games=" not in second.split("rows=")[0]  # nothing was encoded again
    assert sorted((tmp_path / "w.npz.chunks").rglob("*.npz")) == chunks_before
    assert sum(dataset_keys(out).values()) == 100
    split = tmp_path / "split"
    run(*base, "--output", split, "--chunks", tmp_path / "w.npz.chunks", "--val-fraction",
        "0.3", "--shuffle", "--seed", "4")
    current = split / "current"
    train, val = dataset_keys(current / "train.npz"), dataset_keys(current / "val.npz")
    assert train + val == expected_keys([r for r in records if r.source.agent == "random"])
    assert not {g for g, _ in train} & {g for g, _ in val}


def test_to_jsonl_and_state_pool(tmp_path: Path, games) -> None:
    _, db, records = games
    db_records = [r for r in records if r.source.agent == "random"]
    out = tmp_path / "g.jsonl"
    assert "games=25" in run("to-jsonl", "--db", db, "--output", out).stdout
    assert [GameRecord.model_validate_json(line) for line in out.read_text().splitlines()] \
        == db_records
    pool = tmp_path / "pool.jsonl"
    run("state-pool", "--jsonl", out, "--sample-moves", "0,10,30", "--output", pool)
    lines = [json.loads(line) for line in pool.read_text().splitlines()]
    want = [(r.game_id, k) for r in db_records for k in (0, 10, 30) if k < len(r.moves)]
    assert [(p["game_id"], p["move_number"]) for p in lines] == want
    by_id = {r.game_id: r for r in db_records}
    game = get_game("connect")
    for p in lines:
        record = by_id[p["game_id"]]
        assert p["moves"] == record.moves[:p["move_number"]]
        replay = game.replay("square8", 2, record.moves)
        assert p["to_move"] == int(replay.movers[p["move_number"]])
    bad = run("state-pool", "--jsonl", out, "--sample-moves", "x", "--output", pool, check=False)
    assert bad.returncode == 2 and "comma-separated" in bad.stderr


def test_inspect_shows_shapes_metadata_and_provenance(tmp_path: Path, games) -> None:
    _, db, records = games
    chunks = tmp_path / "chunks"
    run("export", "--db", db, "--board-type", "square8", "--num-players", "2", "--output",
        tmp_path / "i.npz", "--chunks", chunks, "--no-progress")
    rows = sum(len(r.moves) for r in records if r.source.agent == "random")
    out = run("inspect", tmp_path / "i.npz").stdout
    assert f"features         float32  ({rows}, 24, 8, 8)" in out
    assert '"board_type": "square8"' in out and "channels (24): f0:stones_rel0" in out
    chunk = next(chunks.glob("*/*.npz"))
    assert f"source file {db.resolve()}" in run("inspect", chunk).stdout  # where it came from
