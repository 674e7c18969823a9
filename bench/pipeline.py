"""End-to-end streaming: games/s and positions/s, latency to a sealed chunk, and Kafka's own
throughput for the same message sizes, measured in the same run.

    python bench/pipeline.py [--games 2000] [--board square8] [--repeats 3] [--bootstrap B]

Starts a local broker (deploy/kafka/kafka.sh) unless --bootstrap is given. Per repeat, on
fresh topics and a fresh chunk store:

  * publishes the games (pre-generated, random agent) with a plain kafka-python producer
    while one `playstream stream` processor (a subprocess) consumes them, and measures the
    time until every game is in a sealed chunk, and per game the latency from its publication
    to the `sealed_at` of its chunk (p50, p99). A burst (every game at once) measures
    throughput, so its latency is mostly queueing; a paced run (``--rate`` games/s, below
    capacity) measures the latency a steady self-play fleet sees;
  * baselines: a plain kafka-python loop producing the same payloads (acks=all), and
    Kafka's producer perf tool (org.apache.kafka.tools.ProducerPerformance) with the same
    record size and count.
Prints medians over the repeats and the ratios pipeline/baseline.
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

from kafka import KafkaProducer

from playstream.chunks import ChunkMetadata, ChunkStore
from playstream.clients.kafka import KafkaConnection
from playstream.localkafka import LocalKafka, kafka_script
from playstream.producers.topics import ensure_topics
from playstream.selfplay import generate_records

CLI = [sys.executable, "-m", "playstream.cli"]


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


def run_once(bootstrap: str, payloads: list[tuple[bytes, bytes]], rows: int,
             work: Path, rate: float | None = None) -> dict[str, float]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topics(KafkaConnection(bootstrap_servers=bootstrap),
                  {topic: 4, f"{topic}.dlq": 1, f"{topic}.chunks": 1})
    chunks = work / topic
    proc = subprocess.Popen([*CLI, "stream", "--bootstrap", bootstrap, "--topic", topic,
                             "--dlq-topic", f"{topic}.dlq", "--chunks-topic", f"{topic}.chunks",
                             "--group", topic, "--chunks", str(chunks), "--chunk-age", "1s",
                             "--chunk-rows", "20000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # let the processor join the group before the clock starts
        start = time.time()
        sent = produce_all(bootstrap, topic, payloads, rate)
        store = ChunkStore(chunks)
        sealed: dict[str, float] = {}
        while len(sealed) < len(payloads):
            if time.time() - start > 600:
                raise SystemExit(f"only {len(sealed)} of {len(payloads)} games sealed")
            for key in store.config_keys():
                for _, path in store.sealed(key):
                    meta = ChunkMetadata.read(path)
                    at = meta.sealed_at.timestamp()
                    for gid in meta.games:
                        sealed.setdefault(gid, at)
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
    args = ap.parse_args()
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
            runs = [run_once(bootstrap, payloads, rows, work) for _ in range(args.repeats)]
            paced_n = min(len(payloads), int(args.rate * 20))
            paced = [run_once(bootstrap, payloads[:paced_n], 0, work, args.rate)
                     for _ in range(args.repeats)]
            perf = [perf_tool(bootstrap, f"bench-perf-{i}", size, args.games * 5)
                    for i in range(args.repeats)]
        finally:
            if broker is not None:
                broker.stop()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{args.games} {args.board} games, {rows} positions, mean record {size} B; "
          f"medians of {args.repeats}")
    print(f"pipeline end to end : {med['games_per_s']:9,.0f} games/s {med['rows_per_s']:9,.0f} "
          f"positions/s  (publish {med['publish_s']:.2f} s, all sealed {med['e2e_s']:.2f} s)")
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
