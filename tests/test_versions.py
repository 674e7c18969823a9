"""Feature versions: export settings, the dataset config they build, and adapters between
versions checked against encoding each version directly."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from playstream.encoders.features import encode_game
from playstream.encoders.versions import (FEATURE_VERSIONS, ExportSettings,
                                          get_feature_adapter, get_feature_version)
from playstream.errors import DatasetError, FeatureVersionError, UnknownGameError
from playstream.games.base import BoardGeometry, PositionPlanes, Replay
from playstream.games.connect import GAME as CONNECT
from playstream.games.connect import ConnectGame


def random_replay(seed: int, board_type: str, num_players: int, max_moves: int) -> Replay:
    rng = np.random.default_rng(seed)
    state = CONNECT.new_state(board_type, num_players)
    moves = []
    while state.to_move is not None and len(moves) < max_moves:
        moves.append(int(rng.choice(CONNECT.legal_moves(state))))
        CONNECT.apply_move(state, moves[-1])
    return CONNECT.replay(board_type, num_players, moves)


def test_current_version() -> None:
    assert FEATURE_VERSIONS == ("v1", "v2")
    assert get_feature_version() == "v2"
    assert get_feature_version("hex8") == "v2"


def test_settings_defaults_and_immutability() -> None:
    settings = ExportSettings(board_type="hex8", num_players=3)
    assert (settings.game, settings.feature_version, settings.history_length,
            settings.sample_every, settings.dense_policy, settings.min_moves) == \
        ("connect", "v2", 3, 1, False, 0)
    with pytest.raises(ValidationError, match="frozen"):
        settings.history_length = 2  # type: ignore[misc]


@pytest.mark.parametrize("change, message", [
    ({"num_players": 1}, "greater than or equal to 2"),
    ({"num_players": 5}, "less than or equal to 4"),
    ({"num_players": "3"}, "valid integer"),
    ({"feature_version": "v3"}, "unknown feature version 'v3'; known: v1, v2"),
    ({"history_length": 9}, "less than or equal to 8"),
    ({"history_length": -1}, "greater than or equal to 0"),
    ({"sample_every": 0}, "greater than or equal to 1"),
    ({"min_moves": -1}, "greater than or equal to 0"),
    ({"game": "../etc"}, "should match pattern"),
    ({"board_type": ""}, "at least 1 character"),
    ({"colour": "red"}, "Extra inputs are not permitted"),
])
def test_settings_are_validated(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExportSettings(**{"board_type": "square8", "num_players": 2, **change})


def test_dataset_config_from_game_geometry_and_encoder_channels() -> None:
    settings = ExportSettings(board_type="hex8", num_players=3, feature_version="v2",
                              history_length=2)
    config = settings.dataset_config()
    encoded = encode_game(CONNECT, random_replay(1, "hex8", 3, 5), "v2", 2)
    assert config.channels == encoded.channels
    assert config.global_names == encoded.global_names
    assert (config.game, config.game_version, config.board_type, config.num_players,
            config.feature_version, config.history_length) == \
        ("connect", "1", "hex8", 3, "v2", 2)
    assert (config.policy_size, config.height, config.width) == (81, 9, 9)
    assert len(config.channels) == 3 * (8 + 2)
    with pytest.raises(UnknownGameError, match="no board type 'hex9'"):
        ExportSettings(board_type="hex9", num_players=2).dataset_config()
    with pytest.raises(UnknownGameError, match="unknown game 'chess'"):
        ExportSettings(game="chess", board_type="hex8", num_players=2).dataset_config()


@pytest.mark.parametrize("board_type, num_players, max_moves", [
    ("square8", 3, 400), ("hex8", 4, 400), ("square19", 2, 40), ("hexagonal", 3, 30)])
def test_adapters_equal_direct_encoding(board_type: str, num_players: int,
                                        max_moves: int) -> None:
    replay = random_replay(7, board_type, num_players, max_moves)
    direct = {v: encode_game(CONNECT, replay, v, 3) for v in FEATURE_VERSIONS}
    for source in FEATURE_VERSIONS:
        for target in FEATURE_VERSIONS:
            adapter = get_feature_adapter(source, target, game=CONNECT, board_type=board_type,
                                          history_length=3)
            assert adapter.channels_in == direct[source].channels
            assert adapter.channels_out == direct[target].channels
            adapted = adapter.adapt(direct[source].features)
            assert adapted.dtype == np.float32
            np.testing.assert_array_equal(adapted, direct[target].features,
                                          err_msg=f"{source} -> {target}")
    assert direct["v2"].features[:, 8 * 4:].any(), "history frames hold threats"


def test_v2_to_v1_is_selection_by_name() -> None:
    adapter = get_feature_adapter("v2", "v1", game=CONNECT, board_type="square8",
                                  history_length=1)
    assert adapter.channels_out == ("f0:stones_rel0", "f0:stones_rel1", "f0:stones_rel2",
                                    "f0:stones_rel3", "f0:empty", "f0:on_board",
                                    "f1:stones_rel0", "f1:stones_rel1", "f1:stones_rel2",
                                    "f1:stones_rel3", "f1:empty", "f1:on_board")
    features = np.arange(2 * 20 * 64, dtype=np.float32).reshape(2, 20, 8, 8)
    keep = [adapter.channels_in.index(name) for name in adapter.channels_out]
    assert keep == [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 18, 19]
    np.testing.assert_array_equal(adapter.adapt(features), features[:, keep])


def test_unknown_versions_and_wrong_shapes() -> None:
    with pytest.raises(FeatureVersionError, match="unknown feature version 'v0'; known: v1, v2"):
        get_feature_adapter("v0", "v2", game=CONNECT, board_type="hex8", history_length=3)
    with pytest.raises(FeatureVersionError, match="unknown feature version 'v3'"):
        get_feature_adapter("v2", "v3", game=CONNECT, board_type="hex8", history_length=3)
    adapter = get_feature_adapter("v1", "v2", game=CONNECT, board_type="hex8", history_length=0)
    with pytest.raises(DatasetError, match=r"expected \(N, 6, 9, 9\)") as err:
        adapter.adapt(np.zeros((1, 10, 9, 9), dtype=np.float32))
    assert (err.value.array, err.value.check) == ("features", "shape")


class NoThreats(ConnectGame):
    """A game that cannot compute threats from stones."""

    def derive_per_seat(self, per_seat: np.ndarray, board_type: str, from_version: str,
                        to_version: str) -> np.ndarray:
        raise FeatureVersionError(f"cannot derive {to_version} from {from_version}")


class ExtraShared(ConnectGame):
    """v2 carries a shared plane v1 lacks (and an extra global): not derivable."""

    def __init__(self, extra_global: bool) -> None:
        self.extra_global = extra_global

    def state_planes(self, state: object, feature_version: str) -> PositionPlanes:
        planes = super().state_planes(state, feature_version)
        if feature_version == "v1":
            return planes
        if self.extra_global:
            return PositionPlanes(planes.per_seat, planes.shared,
                                  np.concatenate([planes.globals, planes.globals[:, :1]], 1),
                                  planes.per_seat_names, planes.shared_names,
                                  (*planes.global_names, "extra"))
        return PositionPlanes(planes.per_seat,
                              np.concatenate([planes.shared, planes.shared[:, :1]], axis=1),
                              planes.globals, planes.per_seat_names,
                              (*planes.shared_names, "extra"), planes.global_names)


def test_conversions_that_cannot_be_derived() -> None:
    with pytest.raises(FeatureVersionError, match="cannot derive v2 from v1"):
        get_feature_adapter("v1", "v2", game=NoThreats(), board_type="hex8", history_length=1)
    # Dropping families needs no derivation, so that direction still works.
    get_feature_adapter("v2", "v1", game=NoThreats(), board_type="hex8", history_length=1)
    with pytest.raises(FeatureVersionError, match="shared planes extra of v2 are not in v1"):
        get_feature_adapter("v1", "v2", game=ExtraShared(False), board_type="hex8",
                            history_length=1)
    with pytest.raises(FeatureVersionError, match="different globals") as err:
        get_feature_adapter("v2", "v1", game=ExtraShared(True), board_type="hex8",
                            history_length=1)
    assert err.value.context == {"from_version": "v2", "to_version": "v1"}


class Mixer:
    """Just what an adapter reads: two per-seat families in v1, and in v2 a third one mixed
    from both (placed between them), so a swapped seat or family axis shows."""

    name = "mixer"
    feature_versions = ("v1", "v2")

    def geometry(self, board_type: str) -> BoardGeometry:
        return BoardGeometry(board_type, 2, 3, np.ones((2, 3), dtype=bool))

    def new_state(self, board_type: str, num_players: int) -> None:
        return None

    def state_planes(self, state: None, feature_version: str) -> PositionPlanes:
        families = ("a", "b") if feature_version == "v1" else ("a", "mix", "b")
        return PositionPlanes(np.zeros((1, 4, len(families), 2, 3), np.float32),
                              np.zeros((1, 2, 2, 3), np.float32), np.zeros((1, 1), np.float32),
                              families, ("s", "t"), ("g",))

    def derive_per_seat(self, per_seat: np.ndarray, board_type: str, from_version: str,
                        to_version: str) -> np.ndarray:
        a, b = per_seat[..., 0, :, :], per_seat[..., 1, :, :]
        return np.stack([a, 10 * a + b, b], axis=-3)


def test_derivation_maps_channels_by_name() -> None:
    adapter = get_feature_adapter("v1", "v2", game=Mixer(), board_type="m", history_length=2)
    features = np.random.default_rng(0).random((3, len(adapter.channels_in), 2, 3),
                                               dtype=np.float32)
    adapted = adapter.adapt(features)
    assert adapted.shape == (3, 3 * (12 + 2), 2, 3)

    def source(name: str) -> np.ndarray:
        return features[:, adapter.channels_in.index(name)]

    for index, name in enumerate(adapter.channels_out):
        frame, plane = name.split(":")
        if plane.startswith("mix_"):
            rel = plane.removeprefix("mix_")
            want = 10 * source(f"{frame}:a_{rel}") + source(f"{frame}:b_{rel}")
        else:
            want = source(name)
        np.testing.assert_allclose(adapted[:, index], want, rtol=1e-6, err_msg=name)
