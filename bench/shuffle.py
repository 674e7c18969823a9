"""`compact --shuffle` against KataGo's two-pass shuffle, on the same rows in one process each.

    python bench/shuffle.py [--rows 27600] [--memory-mb 256] [--rows-per-output 7000]
                            [--repeats 3]

Plays random square19 games (2 players, v2, history 3) through ChunkWriter and
IncrementalExporter into a chunk store of several chunks, until ``--rows`` rows. Then, each
run in a fresh child process (peak RSS: the child's VmHWM; the time
covers the work only, not the interpreter start or imports):

  * playstream: ``compact(..., CompactOptions(shuffle=True))``, the API behind
    ``playstream compact --shuffle`` (one train.npz, every chunk verified on the way), with
    the CLI's defaults, and again with ``compress=True`` (deflated members, like KataGo's
    output);
  * the peer baseline, measured in the same run: KataGo's ``shuffle.py`` method,
    re-implemented from its description (its script imports TensorFlow 1, which does not
    install on this Python). Its inputs are the same rows converted before timing to
    KataGo-style deflated npz files, one per chunk: the chunks' bit-packed binary planes,
    the float planes, globals, dense policy, values and the row columns. Pass 1 loads each
    input, permutes its rows and deals each row to a random output, writing one temporary
    ``np.savez_compressed`` shard per (input, output); pass 2 loads each output's shards,
    concatenates, permutes and writes the output with ``np.savez_compressed``. Outputs hold
    about ``--rows-per-output`` rows.

Prints medians over ``--repeats``: rows/s, playstream/peer ratio, bytes per row on disk, peak
RSS, next to the issue's figure for KataGo's own script (1,721 rows/s on 27,599 rows).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ISSUE_KATAGO_ROWS_PER_S = 1_721
ISSUE_KATAGO_ROWS = 27_599
# KataGo's column names where they have one, ours for the columns it has no use for.
PEER_ARRAYS = ("binaryInputNCHWPacked", "floatInputNCHW", "globalInputNC", "policyTargetsNC",
               "valueTargetsN", "valueTargetsNC", "game_id", "move_number", "player",
               "num_players")


def build(folder: Path, target_rows: int) -> tuple[Path, int]:
    """A chunk store of random square19 games holding at least ``target_rows`` rows."""
    from playstream.chunks import ChunkStore, ChunkWriter
    from playstream.dataset.config import encoder_scope
    from playstream.incremental import IncrementalExporter
    from playstream.selfplay import generate_records

    store = ChunkStore(folder / "chunks")
    writer = ChunkWriter(store, "file-bench+0", encoder_scope("v2", 3))
    exporter = IncrementalExporter(writer, feature_version="v2", history_length=3)
    rows = 0
    records = generate_records(board_type="square19", num_players=2, agent="random", seed=1,
                               count=10 * target_rows, node="bench")
    for i, record in enumerate(records):
        rows += exporter.add_game(writer.next_position + i, record.model_dump(mode="json")).rows
        if rows >= target_rows:
            break
    exporter.finalize()
    writer.close()
    return folder / "chunks", rows


def peer_inputs(chunks: Path, folder: Path) -> list[Path]:
    """Each chunk's rows as a KataGo-style deflated npz (done before any timing)."""
    from playstream.chunks import ChunkStore
    from playstream.dataset import load_npz_dataset

    store = ChunkStore(chunks)
    (key,) = store.config_keys()
    folder.mkdir()
    paths = []
    for i, (_, path) in enumerate(store.sealed(key)):
        dataset = load_npz_dataset(path)
        rows = dataset.rows
        with np.load(path, allow_pickle=False) as stored:
            bits, floats = stored["features_bits.npy"], stored["features_float.npy"]
        out = folder / f"input{i:04d}.npz"
        np.savez_compressed(out, **dict(zip(PEER_ARRAYS, (
            bits, floats, rows.globals, rows.dense_policy(dataset.config.policy_size),
            rows.values, rows.values_mp, rows.game_id, rows.move_number, rows.player,
            rows.num_players))))
        paths.append(out)
    return paths


def peer_shuffle(inputs: list[Path], out: Path, rows_per_output: int, seed: int) -> int:
    """KataGo's two passes (see the module docstring); returns the rows written."""
    rng = np.random.default_rng(seed)
    counts = []
    for path in inputs:
        with np.load(path, allow_pickle=False) as npz:
            counts.append(int(npz["valueTargetsN"].shape[0]))
    outputs = max(1, math.ceil(sum(counts) / rows_per_output))
    tmp = out / "tmp"
    for o in range(outputs):
        (tmp / f"{o}").mkdir(parents=True)
    for i, path in enumerate(inputs):
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in PEER_ARRAYS}
        order = rng.permutation(counts[i])
        arrays = {name: a[order] for name, a in arrays.items()}
        target = rng.integers(0, outputs, counts[i])
        for o in range(outputs):
            mine = target == o
            np.savez_compressed(tmp / f"{o}" / f"{i}.npz",
                                **{name: a[mine] for name, a in arrays.items()})
    written = 0
    for o in range(outputs):
        pieces = []
        for shard in sorted((tmp / f"{o}").iterdir()):
            with np.load(shard, allow_pickle=False) as npz:
                pieces.append({name: npz[name] for name in PEER_ARRAYS})
        joined = {name: np.concatenate([p[name] for p in pieces]) for name in PEER_ARRAYS}
        order = rng.permutation(joined["valueTargetsN"].shape[0])
        np.savez_compressed(out / f"data{o}.npz", **{n: a[order] for n, a in joined.items()})
        written += order.size
        shutil.rmtree(tmp / f"{o}")
    tmp.rmdir()
    return written


def peak_resident() -> int:
    """VmHWM: the peak resident bytes of this process image. Not ``ru_maxrss``, which Linux
    carries over ``exec`` from the parent that generated the games."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) << 10
    raise SystemExit("no VmHWM in /proc/self/status")


def child(method: str, data: Path, out: Path, memory_mb: int, rows_per_output: int) -> None:
    """One timed run; prints a JSON line: seconds, rows, output bytes, peak RSS."""
    from playstream.chunks import ChunkStore
    from playstream.compaction import CompactOptions, compact

    idle = peak_resident()
    start = time.perf_counter()
    if method == "peer":
        rows = peer_shuffle(sorted((data / "peer").glob("*.npz")), out, rows_per_output, 1)
    else:
        result = compact(ChunkStore(data / "chunks"), None, out, CompactOptions(
            shuffle=True, seed=1, compress=method == "playstream-deflated",
            memory_budget_bytes=memory_mb << 20))
        rows = result.rows
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.rglob("*.npz"))
    peak = peak_resident()
    print(json.dumps({"seconds": seconds, "rows": rows, "bytes": size, "peak": peak,
                      "idle": idle}))


def run_child(method: str, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", method, "--data", str(data),
                           "--out", str(out), "--memory-mb", str(args.memory_mb),
                           "--rows-per-output", str(args.rows_per_output)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
    shutil.rmtree(out)
    return json.loads(proc.stdout.strip().splitlines()[-1])


METHODS = ("playstream", "playstream-deflated", "peer")
LABELS = {"playstream": "playstream `compact --shuffle`",
          "playstream-deflated": "playstream `compact --shuffle --compress`",
          "peer": "KataGo's method (re-implemented, deflated npz)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=27_600)
    ap.add_argument("--memory-mb", type=int, default=256)
    ap.add_argument("--rows-per-output", type=int, default=7_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data, args.out, args.memory_mb, args.rows_per_output)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        chunks, rows = build(data, args.rows)
        inputs = peer_inputs(chunks, data / "peer")
        chunk_bytes = sum(p.stat().st_size for p in chunks.rglob("*.npz"))
        peer_bytes = sum(p.stat().st_size for p in inputs)
        samples: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
        for i in range(args.repeats):  # interleaved, so load changes hit every method alike
            for method in METHODS:
                samples[method].append(run_child(method, data, data / f"out-{method}-{i}", args))
    print(f"{rows} square19 rows in {len(inputs)} chunks ({chunk_bytes / rows:,.0f} B/row; "
          f"peer inputs {peer_bytes / rows:,.0f} B/row deflated); --memory-mb "
          f"{args.memory_mb}; peer outputs of ~{args.rows_per_output} rows; medians of "
          f"{args.repeats}")
    peer_rate = rows / statistics.median(s["seconds"] for s in samples["peer"])
    print(f"{'method':48} {'rows/s':>8} {'/peer':>6} {'B/row out':>9} {'peak RSS MiB':>12} "
          f"{'idle MiB':>8}")
    for method, runs in samples.items():
        assert all(r["rows"] == rows for r in runs), (method, [r["rows"] for r in runs])
        rate = rows / statistics.median(r["seconds"] for r in runs)
        print(f"{LABELS[method]:48} {rate:8,.0f} {rate / peer_rate:6.2f} "
              f"{statistics.median(r['bytes'] for r in runs) / rows:9,.0f} "
              f"{max(r['peak'] for r in runs) / 2**20:12.0f} "
              f"{statistics.median(r['idle'] for r in runs) / 2**20:8.0f}")
    print(f"{'issue 9: KataGo shuffle.py, 27,599 rows':48} {ISSUE_KATAGO_ROWS_PER_S:8,} "
          f"{ISSUE_KATAGO_ROWS_PER_S / peer_rate:6.2f}")


if __name__ == "__main__":
    main()
