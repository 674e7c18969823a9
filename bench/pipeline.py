"""End-to-end streaming: games/s and positions/s, latency to a sealed chunk, and Kafka's own
throughput for the same message sizes, measured in the same run.

    python bench/pipeline.py [--games 2000] [--board square8] [--repeats 3] [--bootstrap B]
                             [--feature-version v2] [--history 3]

Starts a local broker (deploy/kafka/kafka.sh) unless --bootstrap is given. Per repeat, on
fresh topics and a fresh chunk store:

  * publishes the games (pre-generated, random agent) with a plain kafka-python producer
    while one `playstream stream` processor (a subprocess, started and joined to its group
    before the clock starts) consumes them, and measures the time until every game is in a
    sealed chunk, and per game the latency from its publication
    to the `sealed_at` of its chunk (p50, p99). A burst (every game at once) measures
    throughput, so its latency is mostly queueing; a paced run (``--rate`` games/s, below
    capacity) measures the latency a steady self-play fleet sees;
  * baselines: the single-process encode rate (bench/encode.py's `time_encoding`: positions/s
    of `encode_game_rows` over the same records with the encoder settings the processor is
    given, replays made beforehand), measured in this process after each pipeline run; a
    plain kafka-python loop producing the same payloads (acks=all); and Kafka's producer perf
    tool (org.apache.kafka.tools.ProducerPerformance) with the same record size and count.
Prints medians over the repeats and the ratios pipeline/baseline (pipeline/encode as the
median of the per-repeat ratios).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from encode import replays_of, time_encoding
from playstream.chunks import ChunkMetadata, ChunkStore
from playstream.clients.kafka import KafkaConnection
from playstream.encoders.versions import ExportSettings
from playstream.games import get_game
from playstream.localkafka import LocalKafka, kafka_script
from playstream.producers.topics import ensure_topics
from playstream.records import GameRecord
from playstream.selfplay import generate_records

CLI = [sys.executable, "-m", "playstream.cli"]
PARTITIONS = 4


def produce_all(bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]],
                rate: float | None = None) -> dict[bytes, float]:
    """Send every payload (paced at ``rate`` per second when given); send times by key."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    sent = {}
    start = time.time()
    for i, (key, value) in enumerate(payloads):
        if rate is not None:
            time.sleep(max(0.0, start + i / rate - time.time()))
        producer.send(topic, key=key, value=value)
        sent[key] = time.time()
    producer.flush()
    producer.close()
    return sent


def perf_tool(bootstrap: str, topic: str, size: int, count: int) -> float:
    out = subprocess.run(["bash", str(kafka_script()), "perf", "--bootstrap", bootstrap,
                          "--topic", topic, "--record-size", str(size), "--num-records",
                          str(count)], capture_output=True, text=True, check=True).stdout
    last = [line for line in out.splitlines() if "records sent" in line][-1]
    return float(last.split("(")[0].split(",")[1].split()[0])


def committed(admin: KafkaAdminClient, group: str) -> dict[object, object]:
    """The group's committed offsets; none while its coordinator is still being set up."""
    try:
        return admin.list_group_offsets(group).get(group, {})
    except KafkaError:
        return {}


def wait_joined(bootstrap: str, group: str, partitions: int, proc: subprocess.Popen[bytes],
                timeout_s: float = 120.0) -> None:
    """Until the processor has positioned every partition: it commits its resume offsets
    when the rebalance completes, so the clock starts on a running processor, not on an
    interpreter still importing (a fixed sleep was too short on a loaded machine)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        deadline = time.time() + timeout_s
        while len(committed(admin, group)) < partitions:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the processor did not join group {group} "
                                 f"(exit code {proc.poll()})")
            time.sleep(0.2)
    finally:
        admin.close()


def sealed_games(store: ChunkStore, seen: set[Path], sealed: dict[str, float]) -> None:
    """Add to ``sealed`` (game id -> seal time) the games of chunks not in ``seen`` yet: each
    chunk's metadata is read once, so the polling takes little of the processor's CPU."""
    for key in store.config_keys():
        for _, path in store.sealed(key):
            if path not in seen:
                seen.add(path)
                meta = ChunkMetadata.read(path)
                at = meta.sealed_at.timestamp()
                for gid in meta.games:
                    sealed.setdefault(gid, at)


def encode_rate(records: list[GameRecord], settings: ExportSettings) -> float:
    """Positions/s of encoding ``records`` in this process, as bench/encode.py measures it."""
    game = get_game(settings.game)
    seconds, batches = time_encoding(game, records, replays_of(game, records), settings)
    return sum(len(b) for b in batches) / seconds


def run_once(bootstrap: str, payloads: list[tuple[bytes, bytes]], rows: int,
             work: Path, settings: ExportSettings,
             rate: float | None = None) -> dict[str, float]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topics(KafkaConnection(bootstrap_servers=bootstrap),
                  {topic: PARTITIONS, f"{topic}.dlq": 1, f"{topic}.chunks": 1})
    chunks = work / topic
    proc = subprocess.Popen([*CLI, "stream", "--bootstrap", bootstrap, "--topic", topic,
                             "--dlq-topic", f"{topic}.dlq", "--chunks-topic", f"{topic}.chunks",
                             "--group", topic, "--chunks", str(chunks), "--chunk-age", "1s",
                             "--chunk-rows", "20000", "--game", settings.game,
                             "--feature-version", str(settings.feature_version),
                             "--history-length", str(settings.history_length)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_joined(bootstrap, topic, PARTITIONS, proc)
        start = time.time()
        sent = produce_all(bootstrap, topic, payloads, rate)
        store = ChunkStore(chunks)
        seen: set[Path] = set()
        sealed: dict[str, float] = {}
        while len(sealed) < len(payloads):
            if time.time() - start > 600:
                raise SystemExit(f"only {len(sealed)} of {len(payloads)} games sealed")
            sealed_games(store, seen, sealed)
            time.sleep(0.2)
        done = max(sealed.values())
    finally:
        proc.terminate()
        proc.wait(60)
    lat = sorted(sealed[k.decode()] - t for k, t in sent.items())
    publish_s = max(sent.values()) - start
    raw_start = time.time()
    produce_all(bootstrap, f"{topic}-raw", payloads)
    raw_s = time.time() - raw_start
    return {"e2e_s": done - start, "publish_s": publish_s, "raw_s": raw_s,
            "games_per_s": len(payloads) / (done - start), "rows_per_s": rows / (done - start),
            "raw_msgs_per_s": len(payloads) / raw_s,
            "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[int(len(lat) * 0.99)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=2000)
    ap.add_argument("--board", default="square8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--rate", type=float, default=50.0,
                    help="Games/s for the paced latency run (below the pipeline's capacity).")
    ap.add_argument("--feature-version", default="v2",
                    help="Given to the processor and to the encode baseline alike.")
    ap.add_argument("--history", type=int, default=3,
                    help="History length, given to the processor and to the encode baseline.")
    args = ap.parse_args()
    settings = ExportSettings(game="connect", board_type=args.board, num_players=2,
                              feature_version=args.feature_version,
                              history_length=args.history)
    records = list(generate_records(board_type=args.board, num_players=2, agent="random",
                                    seed=5, count=args.games, node="bench"))
    payloads = [(r.game_id.encode(), r.to_msgpack()) for r in records]
    rows = sum(len(r.moves) for r in records)
    size = round(statistics.mean(len(v) for _, v in payloads))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = LocalKafka(work / "kafka")
            bootstrap = broker.start()
        try:
            runs = []
            for _ in range(args.repeats):
                run = run_once(bootstrap, payloads, rows, work, settings)
                run["encode_rows_per_s"] = encode_rate(records, settings)
                run["pipeline_per_encode"] = run["rows_per_s"] / run["encode_rows_per_s"]
                runs.append(run)
            paced_n = min(len(payloads), int(args.rate * 20))
            paced = [run_once(bootstrap, payloads[:paced_n], 0, work, settings, args.rate)
                     for _ in range(args.repeats)]
            perf = [perf_tool(bootstrap, f"bench-perf-{i}", size, args.games * 5)
                    for i in range(args.repeats)]
        finally:
            if broker is not None:
                broker.stop()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{args.games} {args.board} games, {rows} positions, mean record {size} B; "
          f"{settings.feature_version}, history {settings.history_length}; "
          f"medians of {args.repeats}")
    print(f"pipeline end to end : {med['games_per_s']:9,.0f} games/s {med['rows_per_s']:9,.0f} "
          f"positions/s  (publish {med['publish_s']:.2f} s, all sealed {med['e2e_s']:.2f} s)")
    print(f"encode, one process : {med['encode_rows_per_s']:9,.0f} positions/s "
          f"(encode_game_rows, replays made beforehand)  "
          f"pipeline/encode = {med['pipeline_per_encode']:.2f}")
    print(f"publish → sealed    : p50 {med['p50_ms']:,.0f} ms  p99 {med['p99_ms']:,.0f} ms "
          f"(burst: all games at once, --chunk-age 1s)")
    p50 = statistics.median(r["p50_ms"] for r in paced)
    p99 = statistics.median(r["p99_ms"] for r in paced)
    print(f"publish → sealed    : p50 {p50:,.0f} ms  p99 {p99:,.0f} ms "
          f"(paced: {args.rate:g} games/s for {paced_n} games, --chunk-age 1s)")
    print(f"kafka-python loop   : {med['raw_msgs_per_s']:9,.0f} msgs/s (same payloads, acks=all)"
          f"  pipeline/loop = {med['games_per_s'] / med['raw_msgs_per_s']:.2f}")
    perf_med = statistics.median(perf)
    print(f"Kafka perf tool     : {perf_med:9,.0f} records/s ({size} B, acks=all)"
          f"  pipeline/perf = {med['games_per_s'] / perf_med:.2f}")


if __name__ == "__main__":
    main()
