"""Feature versions: export settings, the dataset config they build, and adapters between
versions checked against encoding each version directly."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pydantic import ValidationError

from playstream.encoders.features import encode_game
from playstream.encoders.versions import (ExportSettings, get_feature_adapter,
                                          get_feature_version, resolve_feature_version)
from playstream.errors import (ConfigMismatchError, DatasetError, FeatureVersionError,
                               UnknownGameError)
from playstream.games.base import FeatureSpec, GameDefaults, PositionPlanes, Replay
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


FEATURE_VERSIONS = CONNECT.feature_versions


def test_current_version() -> None:
    assert FEATURE_VERSIONS == ("v1", "v2")
    assert get_feature_version(CONNECT) == "v2"
    assert get_feature_version(CONNECT, "hex8") == "v2"
    assert resolve_feature_version("connect", None) == "v2"
    assert resolve_feature_version("connect", "v1") == "v1"
    with pytest.raises(FeatureVersionError,
                       match="unknown feature version 'obs' for game 'connect'; known: v1, v2"):
        resolve_feature_version("connect", "obs")


def test_settings_defaults_and_immutability() -> None:
    settings = ExportSettings(board_type="hex8", num_players=3)
    assert (settings.game, settings.feature_version, settings.history_length,
            settings.sample_every, settings.dense_policy, settings.min_moves) == \
        ("connect", "v2", 3, 1, False, 0)
    with pytest.raises(ValidationError, match="frozen"):
        settings.history_length = 2  # type: ignore[misc]


@pytest.mark.parametrize("change, message", [
    ({"num_players": 0}, "greater than or equal to 1"),
    ({"num_players": 9}, "less than or equal to 8"),
    ({"num_players": "3"}, "valid integer"),
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
    assert len(config.channels) == 3 * (2 * 3 + 2)  # no empty seat slots
    assert config.value_seats == 3 and len(config.binary_channels) == len(config.channels)
    assert all(config.binary_channels)
    with pytest.raises(FeatureVersionError, match="known: v1, v2"):
        ExportSettings(board_type="hex8", num_players=2, feature_version="v3").dataset_config()
    with pytest.raises(ConfigMismatchError, match="played by 2, 3, 4 players, not 5"):
        ExportSettings(board_type="hex8", num_players=5).dataset_config()
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
                                          history_length=3, num_players=num_players)
            assert adapter.channels_in == direct[source].channels
            assert adapter.channels_out == direct[target].channels
            adapted = adapter.adapt(direct[source].features)
            assert adapted.dtype == np.float32
            np.testing.assert_array_equal(adapted, direct[target].features,
                                          err_msg=f"{source} -> {target}")
    per_frame = 2 * num_players + 2
    assert direct["v2"].features[:, per_frame:].any(), "history frames hold threats"


def test_v2_to_v1_is_selection_by_name() -> None:
    adapter = get_feature_adapter("v2", "v1", game=CONNECT, board_type="square8",
                                  history_length=1)
    assert adapter.channels_out == ("f0:stones_rel0", "f0:stones_rel1", "f0:empty",
                                    "f0:on_board", "f1:stones_rel0", "f1:stones_rel1",
                                    "f1:empty", "f1:on_board")
    features = np.arange(2 * 12 * 64, dtype=np.float32).reshape(2, 12, 8, 8)
    keep = [adapter.channels_in.index(name) for name in adapter.channels_out]
    assert keep == [0, 1, 4, 5, 6, 7, 10, 11]
    np.testing.assert_array_equal(adapter.adapt(features), features[:, keep])


def test_unknown_versions_and_wrong_shapes() -> None:
    with pytest.raises(FeatureVersionError, match="unknown feature version 'v0' for game 'connect'; known: v1, v2"):
        get_feature_adapter("v0", "v2", game=CONNECT, board_type="hex8", history_length=3)
    with pytest.raises(FeatureVersionError, match="unknown feature version 'v3'"):
        get_feature_adapter("v2", "v3", game=CONNECT, board_type="hex8", history_length=3)
    adapter = get_feature_adapter("v1", "v2", game=CONNECT, board_type="hex8", history_length=0)
    with pytest.raises(DatasetError, match=r"expected \(N, 4, 9, 9\)") as err:
        adapter.adapt(np.zeros((1, 6, 9, 9), dtype=np.float32))
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

    def feature_spec(self, board_type: str, feature_version: str) -> FeatureSpec:
        spec = super().feature_spec(board_type, feature_version)
        if feature_version == "v1":
            return spec
        if self.extra_global:
            return dataclasses.replace(spec, global_names=(*spec.global_names, "extra"))
        return dataclasses.replace(spec, shared_names=(*spec.shared_names, "extra"))


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


class Mixer(GameDefaults):
    """Just what an adapter reads: two per-seat families in v1, and in v2 a third one mixed
    from both (placed between them), so a swapped seat or family axis shows."""

    name = "mixer"
    feature_versions = ("v1", "v2")

    def feature_spec(self, board_type: str, feature_version: str) -> FeatureSpec:
        families = ("a", "b") if feature_version == "v1" else ("a", "mix", "b")
        return FeatureSpec(families, (), ("s", "t"), ("g",), 2, 3)

    def derive_per_seat(self, per_seat: np.ndarray, board_type: str, from_version: str,
                        to_version: str) -> np.ndarray:
        a, b = per_seat[..., 0, :, :], per_seat[..., 1, :, :]
        return np.stack([a, 10 * a + b, b], axis=-3)


def test_derivation_maps_channels_by_name() -> None:
    adapter = get_feature_adapter("v1", "v2", game=Mixer(), board_type="m", history_length=2)
    features = np.random.default_rng(0).random((3, len(adapter.channels_in), 2, 3),
                                               dtype=np.float32)
    adapted = adapter.adapt(features)
    assert adapted.shape == (3, 3 * (6 + 2), 2, 3)

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
