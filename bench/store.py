"""Export and compact: peak memory against a bound, throughput against copying the bytes.

    python bench/store.py [--games 1600] [--board square19] [--memory-mb 64] [--repeats 3]

Builds a JSONL file of random games whose dataset is several times the memory budget, then
runs the real commands in subprocesses, sampling their anonymous resident memory (RssAnon in
/proc/PID/status; file-backed pages of memory-mapped chunks are page cache, not held memory):

  * ``playstream export --memory-mb B`` (encode → chunks → compacted NPZ), fresh chunk store;
  * ``playstream compact --shuffle --val-fraction 0.05 --memory-mb B`` of those chunks.

The bound checked is B plus the anonymous resident size of an idle interpreter that has imported the
CLI (measured in the same run). Baseline for throughput, measured in the same run: copying
the same number of bytes (``shutil.copyfile`` + fsync). Medians over ``--repeats``; rows/s
too, since format 3 made the bytes per row 27 times smaller on square19 (a step that moves
fewer bytes per row looks slower against a copy of them).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from playstream.dataset import read_metadata
from playstream.gamefiles import JsonlWriter
from playstream.selfplay import generate_records

CLI = [sys.executable, "-m", "playstream.cli"]


def rss_anon(pid: int) -> int:
    """Anonymous resident memory (heap, arrays): what the process really holds. Pages of
    memory-mapped chunk files are excluded: they are page cache the kernel can drop."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def run_sampled(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak anonymous RSS (bytes) of a command, sampled every 10 ms."""
    start = time.perf_counter()
    proc = psutil.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, rss_anon(proc.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr.read().decode()[-2000:]}")
    return seconds, peak


def copy_seconds(sources: list[Path], folder: Path) -> float:
    """Copying ``sources`` into ``folder`` with an fsync of each copy (removed after)."""
    folder.mkdir()
    start = time.perf_counter()
    for src in sources:
        dst = folder / src.name
        shutil.copyfile(src, dst)
        with open(dst, "rb+") as fh:
            os.fsync(fh.fileno())
    seconds = time.perf_counter() - start
    shutil.rmtree(folder)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=1600)
    ap.add_argument("--board", default="square19")
    ap.add_argument("--memory-mb", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        d = Path(tmp)
        games = d / "games.jsonl"
        with JsonlWriter(games) as w:
            for r in generate_records(board_type=args.board, num_players=2, agent="random",
                                      seed=11, count=args.games, node="bench"):
                w.write(r)
        _, idle = run_sampled([sys.executable, "-c",
                               "import playstream.cli.main, time; time.sleep(1.0)"])
        bound = idle + (args.memory_mb << 20)
        rows: dict[str, list[tuple[float, int, float, int, int]]] = {"export": [],
                                                                     "compact": []}
        for i in range(args.repeats):
            out, chunks = d / f"out{i}.npz", d / f"chunks{i}"
            secs, peak = run_sampled([*CLI, "export", "--jsonl", str(games), "--board-type",
                                      args.board, "--num-players", "2", "--output", str(out),
                                      "--chunks", str(chunks), "--memory-mb",
                                      str(args.memory_mb), "--no-progress"])
            size, count = out.stat().st_size, int(read_metadata(out)["rows"])
            rows["export"].append((secs, peak, copy_seconds([out], d / "copy"), size, count))
            ds = d / f"ds{i}"
            secs, peak = run_sampled([*CLI, "compact", "--chunks", str(chunks), "--output",
                                      str(ds), "--shuffle", "--seed", "1", "--val-fraction",
                                      "0.05", "--memory-mb", str(args.memory_mb),
                                      "--no-progress"])
            sealed = sorted(chunks.glob("*/*.npz"))  # the bytes compaction reads
            rows["compact"].append((secs, peak, copy_seconds(sealed, d / "copy"),
                                    sum(p.stat().st_size for p in sealed), count))
            shutil.rmtree(chunks)
            shutil.rmtree(ds)
            out.unlink()
        print(f"{args.games} {args.board} games, {rows['export'][0][4]} rows; budget --memory-mb {args.memory_mb}; idle "
              f"interpreter anon RSS {idle / 2**20:.0f} MiB; bound = {bound / 2**20:.0f} MiB")
        print(f"{'step':8} {'data MiB':>9} {'data/bound':>10} {'peak anon MiB':>13} "
              f"{'within':>6} {'rows/s':>8} {'MB/s':>7} {'copy MB/s':>9} {'time/copy':>9}")
        for step, samples in rows.items():
            secs = statistics.median(s[0] for s in samples)
            peak = max(s[1] for s in samples)
            copy = statistics.median(s[2] for s in samples)
            size, count = samples[0][3], samples[0][4]
            print(f"{step:8} {size / 2**20:9.0f} {size / bound:10.1f} {peak / 2**20:13.0f} "
                  f"{'yes' if peak <= bound else 'NO':>6} {count / secs:8,.0f} "
                  f"{size / 1e6 / secs:7.0f} "
                  f"{size / 1e6 / copy:9.0f} {secs / copy:9.1f}")


if __name__ == "__main__":
    main()
