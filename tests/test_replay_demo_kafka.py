"""Replay and the demo, against the real broker of the test session."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from kafka import KafkaProducer

from playstream.clients.kafka import KafkaConnection
from playstream.compaction import read_manifest
from playstream.dataset import load_npz_dataset
from playstream.producers.topics import ensure_topics
from playstream.records import GameRecord
from playstream.selfplay import generate_records
from playstream.storage import open_storage
from playstream.training import iter_batches

CLI = [sys.executable, "-m", "playstream.cli"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def keys_of(paths: list[Path]) -> Counter[tuple[str, int]]:
    out: Counter[tuple[str, int]] = Counter()
    for path in paths:
        rows = load_npz_dataset(path).rows
        out.update(zip(rows.game_id.tolist(), rows.move_number.tolist()))
    return out


def expected(records: list[GameRecord]) -> Counter[tuple[str, int]]:
    return Counter((r.game_id, m) for r in records for m in range(len(r.moves)))


def test_replay_rebuilds_with_another_encoder_and_resumes(kafka_bootstrap: str,
                                                          kafka_connection: KafkaConnection,
                                                          topic_prefix: str,
                                                          tmp_path: Path) -> None:
    topic = f"{topic_prefix}.games"
    ensure_topics(kafka_connection, {topic: 3})
    records = list(generate_records(board_type="hex8", num_players=2, agent="random", seed=2,
                                    count=30, node="r"))
    others = list(generate_records(board_type="square8", num_players=3, agent="random",
                                   seed=3, count=10, node="r"))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for r in records[:20] + others:
        producer.send(topic, key=r.game_id.encode(), value=r.to_msgpack())
    producer.send(topic, key=b"bad", value=b"\x00garbage")
    producer.flush()
    out = tmp_path / "replay"
    first = run("replay", "--bootstrap", kafka_bootstrap, "--topic", topic, "--feature-version",
                "v1", "--history-length", "1", "--output", out, "--no-progress")
    assert "records=31" in first.stdout and "invalid record" in first.stdout
    hex_key = "connect-1_hex8_2p_v1_h1"
    sq_key = "connect-1_square8_3p_v1_h1"
    manifest = read_manifest(out / "datasets" / hex_key)
    paths = [out / "datasets" / hex_key / "current" / o["file"] for o in manifest["outputs"]]
    assert keys_of(paths) == expected(records[:20])
    assert load_npz_dataset(paths[0]).metadata["feature_version"] == "v1"
    sq = out / "datasets" / sq_key / "current"
    assert keys_of(sorted(sq.glob("*.npz"))) == expected(others)
    # More games arrive; a rerun reads only the new records and the datasets hold all, once.
    for r in records[20:]:
        producer.send(topic, key=r.game_id.encode(), value=r.to_msgpack())
    producer.flush()
    producer.close()
    second = run("replay", "--bootstrap", kafka_bootstrap, "--topic", topic, "--feature-version",
                 "v1", "--history-length", "1", "--output", out, "--no-progress")
    assert "records=10" in second.stdout
    manifest = read_manifest(out / "datasets" / hex_key)
    paths = [out / "datasets" / hex_key / "current" / o["file"] for o in manifest["outputs"]]
    assert keys_of(paths) == expected(records)


def test_demo_runs_the_whole_pipeline(kafka_bootstrap: str, tmp_path: Path) -> None:
    proc = run("demo", "--bootstrap", kafka_bootstrap, "--dir", tmp_path / "demo", "--games",
               "40", "--workers", "2", "--timeout", "240")
    assert "dataset:" in proc.stdout
    current = tmp_path / "demo" / "datasets" / "connect-1_square8_2p_v2_h3" / "current"
    manifest = read_manifest(current.parent)
    assert sum(o["games"] for o in manifest["outputs"]) == 40
    files = sorted(current.glob("*.npz"))
    assert {p.name for p in files} == {"train.npz", "val.npz"}
    rows = [load_npz_dataset(p).rows for p in files]
    game_ids = np.concatenate([r.game_id for r in rows])
    assert len(set(game_ids.tolist())) == 40
    move_numbers = np.concatenate([r.move_number for r in rows])
    keys = Counter(zip(game_ids.tolist(), move_numbers.tolist()))
    assert max(keys.values()) == 1
    # Two workers share the demo's seed, yet play 40 different games: the finalizer found no
    # repeated move sequence, and independently of its digests, no two games have the same
    # positions (the feature planes of a game's rows in move order follow from its moves).
    assert manifest["totals"]["duplicate_moves"] == 0
    features = np.concatenate([r.features for r in rows])
    sequences = {hashlib.sha256(features[(game_ids == g)][np.argsort(
        move_numbers[game_ids == g])].tobytes()).hexdigest() for g in set(game_ids.tolist())}
    assert len(sequences) == 40
    assert run("validate", current / "train.npz").returncode == 0


def test_replay_into_an_object_store_feeds_the_loader(kafka_bootstrap: str,
                                                      kafka_connection: KafkaConnection,
                                                      topic_prefix: str, s3_env: dict[str, str],
                                                      s3_bucket: str, s3_prefix: str,
                                                      tmp_path: Path) -> None:
    topic = f"{topic_prefix}.games"
    ensure_topics(kafka_connection, {topic: 2})
    records = list(generate_records(board_type="square8", num_players=2, agent="random",
                                    seed=4, count=12, node="r"))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for r in records:
        producer.send(topic, key=r.game_id.encode(), value=r.to_msgpack())
    producer.flush()
    producer.close()
    out = f"s3://{s3_bucket}/{s3_prefix}/replay"
    done = run("replay", "--bootstrap", kafka_bootstrap, "--topic", topic, "--feature-version",
               "v2", "--history-length", "1", "--output", out, "--no-progress")
    assert "records=12" in done.stdout
    names = {o.name for o in open_storage(out).list("")}
    assert any(n.startswith("chunks/") for n in names)
    dataset = f"{out}/datasets/connect-1_square8_2p_v2_h1"
    got = Counter(k for batch in iter_batches(dataset, batch_size=64, with_ids=True,
                                              cache_dir=str(tmp_path / "cache"))
                  for k in zip(batch["game_id"].tolist(), batch["move_number"].tolist()))
    assert got == expected(records)
