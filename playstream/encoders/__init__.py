"""Turn replayed games into training rows: features, policy targets and value targets."""
from playstream.encoders.features import (MAX_HISTORY_LENGTH, EncodedFeatures, FeatureLayout,
                                          channel_names, check_feature_request, encode_game,
                                          encode_state_with_history, feature_layout)
from playstream.encoders.policy import PolicyTargets, SoftTarget, build_policy_targets
from playstream.encoders.rows import encode_game_rows
from playstream.encoders.values import (compute_multi_player_values, compute_value,
                                        value_from_final_ranking, value_from_final_winner)
from playstream.encoders.versions import (ExportSettings, FeatureAdapter, get_feature_adapter,
                                          get_feature_version, resolve_feature_version)

__all__ = [
    "MAX_HISTORY_LENGTH", "EncodedFeatures",
    "ExportSettings", "FeatureAdapter", "FeatureLayout", "PolicyTargets", "SoftTarget",
    "build_policy_targets", "channel_names", "check_feature_request",
    "compute_multi_player_values", "compute_value", "encode_game", "encode_game_rows",
    "encode_state_with_history", "feature_layout", "get_feature_adapter",
    "get_feature_version", "resolve_feature_version", "value_from_final_ranking", "value_from_final_winner",
]
