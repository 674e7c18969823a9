"""Game files on disk: JSONL (one record per line) and the SQLite game database.

Both are read as a sequence of `SourceItem`s whose `position` (line number, or the game's
insertion sequence number in the database) is what chunk names and error messages cite.
"""
from playstream.gamefiles.item import SourceItem
from playstream.gamefiles.source import open_game_source, position_context
from playstream.gamefiles.jsonl import JsonlWriter, iter_jsonl
from playstream.gamefiles.sqlite import GameDatabase, iter_database

__all__ = ["SourceItem", "open_game_source", "position_context", "JsonlWriter", "iter_jsonl",
           "GameDatabase", "iter_database"]
