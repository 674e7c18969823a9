"""The SQLite game database: one documented schema (docs/GAME_DATABASE.md).

`selfplay` writes it; `export` and friends open it read-only, so an export never takes a
write lock on a database that self-play is still filling.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator

from playstream.errors import GameFileError, RecordError
from playstream.gamefiles.item import SourceItem
from playstream.records import GameRecord

FORMAT_NAME = "playstream-games"
SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_info (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS games (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    game_id        TEXT NOT NULL UNIQUE,
    schema_version INTEGER NOT NULL,
    game           TEXT NOT NULL,
    game_version   TEXT NOT NULL,
    board_type     TEXT NOT NULL,
    num_players    INTEGER NOT NULL,
    seed           INTEGER,
    created_at     TEXT NOT NULL,
    finished_at    TEXT NOT NULL,
    source_json    TEXT NOT NULL,
    num_moves      INTEGER NOT NULL,
    has_search     INTEGER NOT NULL,
    ranks_json     TEXT NOT NULL,
    winner         INTEGER,
    termination    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS games_config ON games (board_type, num_players);
CREATE TABLE IF NOT EXISTS moves (
    game_seq    INTEGER NOT NULL REFERENCES games (seq),
    move_number INTEGER NOT NULL,
    cell        INTEGER NOT NULL,
    PRIMARY KEY (game_seq, move_number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS search_stats (
    game_seq       INTEGER NOT NULL REFERENCES games (seq),
    move_number    INTEGER NOT NULL,
    policy_indices TEXT NOT NULL,
    policy_probs   TEXT NOT NULL,
    root_value     REAL,
    PRIMARY KEY (game_seq, move_number)
) WITHOUT ROWID;
"""

_GAME_COLUMNS = ("seq", "game_id", "schema_version", "game", "game_version", "board_type",
                 "num_players", "seed", "created_at", "finished_at", "source_json", "num_moves",
                 "has_search", "ranks_json", "winner", "termination")


def _connect_read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise GameFileError("game database does not exist", file=str(path))
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        _check_schema(conn, path)
    except sqlite3.DatabaseError as err:
        raise GameFileError(f"not a readable SQLite database: {err}", file=str(path)) from None
    return conn


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "schema_info" not in tables:
        raise GameFileError(f"not a playstream game database (no schema_info table; tables: "
                            f"{', '.join(sorted(tables)) or 'none'})", file=str(path))
    info = dict(conn.execute("SELECT key, value FROM schema_info").fetchall())
    if info.get("format") != FORMAT_NAME or info.get("schema_version") != SCHEMA_VERSION:
        raise GameFileError(f"foreign game database: format={info.get('format')!r} "
                            f"schema_version={info.get('schema_version')!r}, expected "
                            f"{FORMAT_NAME!r} {SCHEMA_VERSION!r}", file=str(path))
    missing = {"games", "moves", "search_stats"} - tables
    if missing:
        raise GameFileError(f"game database lacks tables {sorted(missing)}", file=str(path))


def _row_to_data(conn: sqlite3.Connection, row: tuple[Any, ...]) -> dict[str, Any]:
    g = dict(zip(_GAME_COLUMNS, row))
    seq = g["seq"]
    moves = [c for (c,) in conn.execute(
        "SELECT cell FROM moves WHERE game_seq = ? ORDER BY move_number", (seq,))]
    search: list[dict[str, Any] | None] | None = None
    if g["has_search"]:
        search = [None] * len(moves)
        for n, idx, probs, root in conn.execute(
                "SELECT move_number, policy_indices, policy_probs, root_value FROM search_stats "
                "WHERE game_seq = ?", (seq,)):
            if 0 <= n < len(moves):
                search[n] = {"policy_indices": json.loads(idx), "policy_probs": json.loads(probs),
                             "root_value": root}
    return {"schema_version": g["schema_version"], "game_id": g["game_id"], "game": g["game"],
            "game_version": g["game_version"], "board_type": g["board_type"],
            "num_players": g["num_players"], "seed": g["seed"], "created_at": g["created_at"],
            "finished_at": g["finished_at"], "source": json.loads(g["source_json"]),
            "moves": moves, "search": search, "ranks": json.loads(g["ranks_json"]),
            "winner": g["winner"], "termination": g["termination"]}


def iter_database(path: Path, *, start: int = 1) -> Iterator[SourceItem]:
    """Yield games in insertion order from sequence number ``start`` on, read-only."""
    conn = _connect_read_only(path)
    sql = f"SELECT {', '.join(_GAME_COLUMNS)} FROM games WHERE seq >= ? ORDER BY seq"
    try:
        with conn:
            for row in conn.execute(sql, (start,)):  # streamed: bounded memory
                try:
                    yield SourceItem(row[0], _row_to_data(conn, row), None)
                except (ValueError, sqlite3.DatabaseError) as err:
                    yield SourceItem(row[0], None, RecordError(
                        f"unreadable game row: {err}", field="record", game_id=row[1],
                        file=str(path), seq=row[0]))
    except sqlite3.DatabaseError as err:
        raise GameFileError(f"database read failed: {err}", file=str(path)) from None
    finally:
        conn.close()


class GameDatabase:
    """Writer for the game database; one transaction per game so a crash loses at most the
    game being written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(self.path)
            self._conn.execute("PRAGMA journal_mode=WAL")
            existing = {r[0] for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if existing and "schema_info" not in existing:
                raise GameFileError("refusing to write into a foreign SQLite database",
                                    file=str(self.path))
            with self._conn:
                self._conn.executescript(SCHEMA)
                self._conn.executemany(
                    "INSERT OR IGNORE INTO schema_info (key, value) VALUES (?, ?)",
                    [("format", FORMAT_NAME), ("schema_version", SCHEMA_VERSION)])
            _check_schema(self._conn, self.path)
        except sqlite3.DatabaseError as err:
            raise GameFileError(f"cannot open game database for writing: {err}",
                                file=str(self.path)) from None

    def write(self, record: GameRecord) -> None:
        d = record.model_dump(mode="json")
        try:
            with self._conn:
                cur = self._conn.execute(
                    f"INSERT INTO games ({', '.join(_GAME_COLUMNS[1:])}) "
                    f"VALUES ({', '.join('?' * (len(_GAME_COLUMNS) - 1))})",
                    (d["game_id"], d["schema_version"], d["game"], d["game_version"],
                     d["board_type"], d["num_players"], d["seed"], d["created_at"],
                     d["finished_at"], json.dumps(d["source"]), len(d["moves"]),
                     int(d["search"] is not None), json.dumps(d["ranks"]), d["winner"],
                     d["termination"]))
                seq = cur.lastrowid
                self._conn.executemany(
                    "INSERT INTO moves (game_seq, move_number, cell) VALUES (?, ?, ?)",
                    [(seq, i, c) for i, c in enumerate(d["moves"])])
                if d["search"] is not None:
                    self._conn.executemany(
                        "INSERT INTO search_stats VALUES (?, ?, ?, ?, ?)",
                        [(seq, i, json.dumps(s["policy_indices"]), json.dumps(s["policy_probs"]),
                          s["root_value"]) for i, s in enumerate(d["search"]) if s is not None])
        except sqlite3.IntegrityError as err:
            raise GameFileError(f"cannot store game: {err}", file=str(self.path),
                                game_id=record.game_id) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "GameDatabase":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
