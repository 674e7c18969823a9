"""One finished game to its training rows: the step between a record and a chunk."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from playstream.dataset import RowBatch
from playstream.dataset.schema import MAX_GAME_ID_LEN
from playstream.errors import ConfigMismatchError, RecordError
from playstream.games.base import CHANCE, Game, Replay

from .features import encode_game
from .policy import SoftTarget, build_policy_targets
from .values import game_values
from .versions import ExportSettings


def encode_game_rows(game: Game, replay: Replay, search: Sequence[SoftTarget | None] | None,
                     settings: ExportSettings, game_id: str) -> RowBatch:
    """Rows for the seat moves t with t % sample_every == 0 of a finished game (chance
    moves give no row).

    ``search[t]`` holds move t's search statistics or None (one-hot target on the move
    played); ``search`` None means no move has any. Values come from ranks or returns as the
    game declares: ``values`` for the seat to move, ``values_mp`` by absolute seat.
    """
    if not 1 <= len(game_id) <= MAX_GAME_ID_LEN:
        raise RecordError(f"game_id must have 1..{MAX_GAME_ID_LEN} characters, "
                          f"got {len(game_id)}", field="game_id")
    if replay.outcome is None:
        raise RecordError(f"the game is not over after {len(replay.moves)} moves, so it has "
                          "no value targets", field="moves", game_id=game_id)
    ours = (game.name, replay.board_type, replay.num_players)
    wanted = (settings.game, settings.board_type, settings.num_players)
    if ours != wanted:
        raise ConfigMismatchError(f"game (name, board_type, num_players) {ours} does not match "
                                  f"the export settings {wanted}", game_id=game_id)
    num_moves = len(replay.moves)
    if search is None:
        search = [None] * num_moves
    if len(search) != num_moves:
        raise RecordError(f"search has {len(search)} entries for {num_moves} moves",
                          field="search", game_id=game_id)

    rows = np.arange(0, num_moves, settings.sample_every, dtype=np.int64)
    rows = rows[replay.movers[rows] != CHANCE]
    encoded = encode_game(game, replay, settings.feature_version, settings.history_length, rows)
    policy = build_policy_targets(replay.moves, search, rows,
                                  game.num_actions(replay.board_type), game_id=game_id)
    seat_values = game_values(game, replay.board_type, replay.outcome)
    player = replay.movers[rows]
    return RowBatch(
        features=encoded.features, globals=encoded.globals,
        values=seat_values[player - 1],
        values_mp=np.tile(seat_values, (rows.size, 1)),
        policy_indptr=policy.indptr, policy_indices=policy.indices,
        policy_values=policy.values,
        game_id=np.full(rows.size, game_id, dtype=f"<U{len(game_id)}"),
        move_number=rows.astype(np.int32), player=player.astype(np.int8),
        num_players=np.full(rows.size, replay.num_players, dtype=np.int8))
