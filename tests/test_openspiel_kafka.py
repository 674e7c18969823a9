"""Go and chess through the Kafka path on the real broker: `selfplay --bootstrap` publishes,
`stream --game openspiel` seals chunks exactly once, `finalize --once` publishes the dataset,
whose rows are the published games' seat moves, each once."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyspiel
import pytest

from playstream.chunks import ChunkStore
from playstream.compaction import read_manifest
from playstream.dataset import load_npz_dataset
from playstream.dataset.config import encoder_scope
from test_stream_kafka import (PARTITIONS, Processor, Topics, end_offsets, summary, wait_for)
from test_stream_kafka import processors, topics  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
CLI = [sys.executable, "-m", "playstream.cli"]


def run(*args: object) -> str:
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("board_type, agent, games", [
    ("go(board_size=9)", "mcts", 2), ("chess", "random", 2)])
def test_openspiel_games_through_kafka_exactly_once(
        topics: Topics, processors: list[Processor], tmp_path: Path,  # noqa: F811
        board_type: str, agent: str, games: int) -> None:
    local = tmp_path / "same.jsonl"  # the same games (same seed), for the expected rows
    common = ["--game", "openspiel", "--board-type", board_type, "--agent", agent,
              "--simulations", 3, "--seed", 4, "--games", games, "--no-progress"]
    run("selfplay", *common, "--output", local)
    run("selfplay", *common, "--bootstrap", topics.bootstrap, "--topic", topics.games,
        "--partitions", PARTITIONS, "--spool", tmp_path / "spool")
    store = ChunkStore(tmp_path / "store")
    processors.append(Processor(topics, store.root, tmp_path / "p1", "--game", "openspiel",
                                "--history-length", "1", "--chunk-rows", "50",
                                "--chunk-age", "1s"))
    ends = end_offsets(topics)
    key_end = f"_2p_{encoder_scope('obs', 1)}"

    def sealed_all() -> bool:
        keys = [k for k in store.config_keys() if k.endswith(key_end)]
        last: dict[int, int] = {}
        for key in keys:
            for name, _ in store.sealed(key):
                p = int(name.stream.rpartition("+")[2])
                last[p] = max(last.get(p, -1), name.last)
        return all(end == 0 or last.get(p) == end - 1 for p, end in ends.items())

    wait_for("all offsets sealed", sealed_all, 120, processors)
    code, _, out = processors[0].stop()
    assert code == 0, processors[0].logs()
    assert summary(out)["processed"] == games and summary(out)["invalid"] == 0
    output = tmp_path / "datasets"
    run("finalize", "--bootstrap", topics.bootstrap, "--chunks", store.root, "--output",
        output, "--chunks-topic", topics.chunks, "--group", f"{topics.group}-fin", "--once")
    [key] = [k for k in store.config_keys() if k.endswith(key_end)]
    manifest = read_manifest(output / key)
    paths = [output / key / "current" / o["file"] for o in manifest["outputs"]]
    rows: Counter[tuple[str, int]] = Counter()
    game = pyspiel.load_game(board_type)
    for path in paths:
        run("validate", path)
        data = load_npz_dataset(path)
        assert data.metadata["policy_size"] == game.num_distinct_actions()
        assert data.metadata["board_type"] == board_type
        rows.update(zip(data.rows.game_id.tolist(), data.rows.move_number.tolist()))
    records = [json.loads(line) for line in local.read_text().splitlines()]
    want = Counter((r["game_id"], t) for r in records for t in range(len(r["moves"])))
    assert rows == want  # every seat move once (go and chess have no chance moves)
