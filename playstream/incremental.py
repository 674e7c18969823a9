"""Record → rows → chunk: `IncrementalExporter`, the record half of the seed's exporter of the
same name (``add_game``, ``finalize``); the chunk half, rolling and sealing, is `ChunkWriter`.

Shared by the embedded export (game files) and the stream processors (Kafka partitions):
both hand it raw records with their stream position, and it validates, encodes and appends
them to the stream's `ChunkWriter`. A record that fails is skipped with its reason, never
silently and never by stopping the stream.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from playstream.chunks import ChunkWriter, SealedChunk
from playstream.dataset import DatasetConfig
from playstream.encoders.cache import ExportCache
from playstream.encoders.rows import encode_game_rows
from playstream.encoders.versions import ExportSettings
from playstream.errors import FeatureVersionError, PlaystreamError, RecordError
from playstream.games import get_game
from playstream.records import GameRecord, validate_record

RecordFilter = Callable[[GameRecord], "tuple[str, str] | None"]
"""Accepts a valid record (None) or names why it is skipped: (field, reason)."""


@dataclass(frozen=True)
class AddResult:
    """What happened to one record: rows appended, or why it was skipped (``field`` names
    the field that made it skip, ``invalid`` is set when the record is malformed)."""

    position: int
    game_id: str | None
    rows: int
    skipped: str | None
    invalid: RecordError | None
    sealed: list[SealedChunk] = field(default_factory=list)
    field: str | None = None


class IncrementalExporter:
    """Validates each record of one stream, encodes it with one feature version and history
    length, and appends its rows to the stream's `ChunkWriter` (which seals the chunks)."""

    def __init__(self, writer: ChunkWriter, *, feature_version: str, history_length: int,
                 accept: RecordFilter | None = None, cache: ExportCache | None = None) -> None:
        self.writer = writer
        self.feature_version = feature_version
        self.history_length = history_length
        self._accept = accept
        self._cache = cache
        self._settings: dict[tuple[str, str, int], tuple[ExportSettings, DatasetConfig]] = {}

    @property
    def next_position(self) -> int:
        return self.writer.next_position

    def settings_for(self, game: str, board_type: str, num_players: int
                     ) -> tuple[ExportSettings, DatasetConfig]:
        key = (game, board_type, num_players)
        if key not in self._settings:
            settings = ExportSettings(game=game, board_type=board_type, num_players=num_players,
                                      feature_version=self.feature_version,
                                      history_length=self.history_length)
            self._settings[key] = (settings, settings.dataset_config())
        return self._settings[key]

    def add_game(self, position: int, data: dict[str, Any] | None,
                 error: RecordError | None = None, *,
                 on_invalid: Callable[[RecordError], None] | None = None,
                 **ctx: Any) -> AddResult:
        """Add the record read at ``position`` (``data``), or account for one that could not
        be decoded (``error``). Returns what happened; raises only for store failures.

        ``on_invalid`` is called for a record that fails validation or encoding BEFORE its
        position reaches the writer, which may seal it: a dead letter sent from there is out
        before any chunk claims the offset, so a crash right after a seal never loses one."""
        if error is None:
            try:
                record, replay = validate_record(data, **ctx)
            except RecordError as err:
                error = err
        if error is not None:
            if on_invalid is not None:
                on_invalid(error)
            sealed = self.writer.add(position, skipped=f"invalid: {error}")
            return AddResult(position, error.game_id, 0, str(error), error, sealed, error.field)
        refusal = self._accept(record) if self._accept else None
        if refusal is not None:
            name, reason = refusal
            sealed = self.writer.add(position, skipped=reason)
            return AddResult(position, record.game_id, 0, reason, None, sealed, name)
        try:
            settings, config = self.settings_for(record.game, record.board_type,
                                                 record.num_players)
        except FeatureVersionError as err:  # a valid game this encoder does not encode
            reason = f"not encoded: {err.message}"
            sealed = self.writer.add(position, skipped=reason)
            return AddResult(position, record.game_id, 0, reason, None, sealed,
                             "feature_version")
        try:
            rows = self._encode(record, replay, settings)
        except PlaystreamError as err:
            named = err.field if isinstance(err, RecordError) and err.field else "moves"
            invalid = RecordError(f"cannot encode: {err.message}", field=named,
                                  game_id=record.game_id, **ctx)
            if on_invalid is not None:
                on_invalid(invalid)
            sealed = self.writer.add(position, skipped=str(invalid))
            return AddResult(position, record.game_id, 0, str(invalid), invalid, sealed,
                             invalid.field)
        sealed = self.writer.add(position, config, rows, game_id=record.game_id,
                                 moves_digest=record.moves_digest())
        return AddResult(position, record.game_id, len(rows), None, None, sealed)

    def _encode(self, record: GameRecord, replay: Any, settings: ExportSettings) -> Any:
        game = get_game(record.game)
        search = None
        if record.search is not None:
            search = [None if s is None else (s.policy_indices, s.policy_probs, s.root_value)
                      for s in record.search]

        def compute() -> Any:
            return encode_game_rows(game, replay, search, settings, record.game_id)

        if self._cache is None:
            return compute()
        return self._cache.get_or_compute(record, settings, compute)

    def tick(self) -> list[SealedChunk]:
        return self.writer.tick()

    def finalize(self) -> list[SealedChunk]:
        return self.writer.finalize()
