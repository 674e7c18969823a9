"""`playstream report` on a dataset made by real self-play and export: every figure is on the
page as a decodable PNG, and the numbers under the figures are the data's (checked against
the JSONL game records, computed independently here)."""
from __future__ import annotations

import base64
import json
import struct
import sys
import uuid
from collections import Counter
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from playstream.cli.main import main
from playstream.dataset import iter_row_batches
from playstream.report.render import moves_figure
from playstream.report.stats import ConfigStats, collect, find_sources, played_moves

GAMES = 36
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES_PER_CONFIG = ("game-lengths", "outcomes", "values", "entropy", "moves", "duplicates")


class Page(HTMLParser):
    """The figures (id → inlined image bytes) and the number tables (figure id → rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, list[bytes]] = {}
        self.tables: dict[str, list[list[list[str]]]] = {}
        self._figure: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure":
            self._figure = a["id"]
            self.images.setdefault(self._figure, [])
        elif tag == "img" and self._figure is not None:
            src = a["src"] or ""
            prefix = "data:image/png;base64,"
            assert src.startswith(prefix), src[:40]
            self.images[self._figure].append(base64.b64decode(src[len(prefix):],
                                                              validate=True))
        elif tag == "table":
            self.tables.setdefault(a["data-figure"] or "", []).append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            last_table = list(self.tables.values())[-1][-1] if self.tables else None
            if last_table is not None:
                last_table.append(self._row)
            self._row = None


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def games(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Self-play games in a JSONL file, plus one game copied under another game_id."""
    root = tmp_path_factory.mktemp("report")
    jsonl = root / "games.jsonl"
    invoke("selfplay", "--board-type", "square8", "--num-players", "2", "--games", str(GAMES),
           "--seed", "3", "--output", str(jsonl), "--no-progress")
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    copy = dict(records[5])
    copy["game_id"] = copy["game_id"][:-24] + uuid.uuid4().hex[:24]
    records.append(copy)
    with open(jsonl, "a") as fh:
        fh.write(json.dumps(copy) + "\n")
    return jsonl, records


@pytest.fixture(scope="module")
def finalizer_output(games: tuple[Path, list[dict]], tmp_path_factory: pytest.TempPathFactory
                     ) -> Path:
    """A finalizer-style output folder, ``<output>/<config key>/<version>/``, published
    twice (two versions) with train and validation shards."""
    jsonl, _ = games
    out = tmp_path_factory.mktemp("datasets")
    dataset = out / "connect-1_square8_2p"
    for _ in range(2):
        invoke("export", "--jsonl", str(jsonl), "--board-type", "square8", "--num-players",
               "2", "--output", str(dataset), "--shard-rows", "400", "--val-fraction", "0.25",
               "--no-progress")
    return out


@pytest.fixture(scope="module")
def report(finalizer_output: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Page, Path, str]:
    where = tmp_path_factory.mktemp("out")
    output = invoke("report", str(finalizer_output), "--output", str(where / "report.html"),
                    "--png", str(where / "png"), "--no-progress")
    page = Page()
    page.feed((where / "report.html").read_text())
    return page, where, output


def config_key(page: Page) -> str:
    (key,) = [row[0] for row in page.tables["configurations"][0][1:]]
    return key


def test_every_figure_is_one_decodable_png(report: tuple[Page, Path, str]) -> None:
    page, where, _ = report
    key = config_key(page)
    expected = {"configurations", "versions"} | {f"{f}-{key}" for f in FIGURES_PER_CONFIG}
    assert set(page.images) == expected
    for ident, images in page.images.items():
        assert len(images) == 1, ident
        width, height = png_size(images[0])
        assert width >= 200 and height >= 150, (ident, width, height)
        # --png wrote the same figure as a file
        assert (where / "png" / f"{ident}.png").read_bytes() == images[0]
    assert sorted(p.stem for p in (where / "png").iterdir()) == sorted(expected)


def test_game_length_counts_are_the_records_lengths(report: tuple[Page, Path, str],
                                                    games: tuple[Path, list[dict]]) -> None:
    page, _, _ = report
    _, records = games
    (table,) = page.tables[f"game-lengths-{config_key(page)}"]
    assert table[0] == ["moves", "games"]
    shown = {int(moves): int(n) for moves, n in table[1:]}
    assert shown == dict(Counter(len(r["moves"]) for r in records))


def test_rows_and_games_per_configuration_and_version(report: tuple[Page, Path, str],
                                                      games: tuple[Path, list[dict]]) -> None:
    page, _, _ = report
    _, records = games
    moves = sum(len(r["moves"]) for r in records)
    ((header, row),) = [page.tables["configurations"][0]]
    assert header == ["configuration", "files", "rows", "games"]
    assert int(row[2]) == moves and int(row[3]) == len(records)
    assert int(row[1]) >= 3  # train shards and a validation shard
    (versions,) = page.tables["versions"]
    assert [r[5] for r in versions[1:]] == ["", "yes"]  # two versions, the newest current
    assert [(int(r[3]), int(r[4])) for r in versions[1:]] == [(moves, len(records))] * 2


def test_the_copied_game_is_the_one_duplicate(report: tuple[Page, Path, str],
                                              games: tuple[Path, list[dict]]) -> None:
    page, _, _ = report
    _, records = games
    summary, listed = page.tables[f"duplicates-{config_key(page)}"]
    assert summary[1] == [str(len(records)), str(len(records) - 1), "1"]
    ((copies, moves, ids),) = [r for r in listed[1:]]
    assert (int(copies), int(moves)) == (2, len(records[5]["moves"]))
    assert set(ids.split(", ")) == {records[5]["game_id"], records[-1]["game_id"]}


def test_outcomes_and_moves_are_the_records(report: tuple[Page, Path, str],
                                            games: tuple[Path, list[dict]]) -> None:
    page, _, _ = report
    _, records = games
    key = config_key(page)
    (outcomes,) = page.tables[f"outcomes-{key}"]
    winners = Counter(r["winner"] for r in records)
    assert {int(seat): int(wins) for seat, wins, _ in outcomes[1:]} == {1: winners[1],
                                                                        2: winners[2]}
    (grid,) = page.tables[f"moves-{key}"]
    played = Counter(m for r in records for m in r["moves"])
    cells = {int(row[0]) * 8 + col: int(n) for row in grid[1:] for col, n in
             enumerate(row[1:])}
    assert cells == {cell: played[cell] for cell in range(64)}


def test_a_single_file_export_reports_too(games: tuple[Path, list[dict]],
                                          tmp_path: Path) -> None:
    jsonl, records = games
    npz = tmp_path / "one.npz"
    invoke("export", "--jsonl", str(jsonl), "--board-type", "square8", "--num-players", "2",
           "--output", str(npz), "--no-progress")
    invoke("report", str(npz), "--output", str(tmp_path / "r.html"), "--no-progress")
    page = Page()
    page.feed((tmp_path / "r.html").read_text())
    assert int(page.tables["configurations"][0][1][3]) == len(records)


def test_without_matplotlib_one_line_names_the_extra(finalizer_output: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "playstream.report.render", raising=False)
    result = CliRunner().invoke(main, ["report", str(finalizer_output), "--output",
                                       str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "pip install 'playstream[report]'" in result.output
    assert not (tmp_path / "r.html").exists()


def test_not_a_dataset_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--output",
                                       str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert "holds no dataset" in result.output


@pytest.mark.kafka
def test_dead_letter_reasons_are_counted_from_the_topic(
        kafka_bootstrap: str, topic_prefix: str, finalizer_output: Path,
        tmp_path: Path) -> None:
    from kafka import KafkaProducer

    topic = f"{topic_prefix}.dlq"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sent = {"not msgpack": 3, "moves: illegal move 64 at ply 2": 2}
    for reason, n in sent.items():
        for i in range(n):
            producer.send(topic, key=b"k", value=b"garbage %d" % i,
                          headers=[("playstream-reason", reason.encode())])
    producer.send(topic, value=b"no headers at all")
    producer.flush()
    producer.close()
    output = invoke("report", str(finalizer_output), "--output", str(tmp_path / "r.html"),
                    "--bootstrap-server", kafka_bootstrap, "--dlq-topic", topic,
                    "--no-progress")
    assert "dead_letters=6" in output
    page = Page()
    page.feed((tmp_path / "r.html").read_text())
    assert png_size(page.images["dead-letters"][0])[0] >= 200
    (table,) = page.tables["dead-letters"]
    assert {reason: int(n) for reason, n in table[1:]} == {
        **sent, "(no playstream-reason header)": 1}

    missing = CliRunner().invoke(main, [
        "report", str(finalizer_output), "--output", str(tmp_path / "m.html"),
        "--bootstrap-server", kafka_bootstrap, "--dlq-topic", f"{topic_prefix}.absent"])
    assert missing.exit_code == 1
    assert "topic does not exist" in missing.output


def test_played_move_is_the_highest_entry_lowest_index_on_a_tie(
        finalizer_output: Path) -> None:
    batch = next(iter_row_batches(find_sources(finalizer_output).files[0], 3))
    soft = replace(batch, policy_indptr=np.array([0, 3, 3, 4], np.int64),
                   policy_indices=np.array([5, 9, 7, 3], np.int32),
                   policy_values=np.array([0.2, 0.4, 0.4, 1.0], np.float32))
    assert played_moves(soft).tolist() == [7, -1, 3]


def test_a_policy_that_is_not_the_board_is_a_histogram_of_actions(
        finalizer_output: Path, games: tuple[Path, list[dict]]) -> None:
    _, records = games
    sources = find_sources(finalizer_output)
    (board,) = collect(sources).configs.values()
    # The same rows under a configuration with one more action (a pass move, say).
    stats = ConfigStats(replace(board.config, policy_size=65))
    for file in sources.files:
        for batch in iter_row_batches(file, 256):
            stats.add(batch)
    assert stats.move_grid() is None
    played = Counter(m for r in records for m in r["moves"])
    assert stats.move_counts.tolist() == [played[i] for i in range(65)]
    figure = moves_figure(stats)
    assert figure.title.startswith("Moves by action index")
    assert png_size(figure.png)[0] >= 200


def test_three_seat_outcomes_are_the_records_winners(tmp_path: Path) -> None:
    jsonl = tmp_path / "g3.jsonl"
    invoke("selfplay", "--board-type", "square8", "--num-players", "3", "--games", "12",
           "--seed", "5", "--output", str(jsonl), "--no-progress")
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    npz = tmp_path / "three.npz"
    invoke("export", "--jsonl", str(jsonl), "--board-type", "square8", "--num-players", "3",
           "--output", str(npz), "--no-progress")
    invoke("report", str(npz), "--output", str(tmp_path / "r.html"), "--no-progress")
    page = Page()
    page.feed((tmp_path / "r.html").read_text())
    (outcomes,) = page.tables[f"outcomes-{config_key(page)}"]
    winners = Counter(r["winner"] for r in records)
    assert {int(seat): int(wins) for seat, wins, _ in outcomes[1:]} == {
        seat: winners[seat] for seat in (1, 2, 3)}
