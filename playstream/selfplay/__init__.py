"""Self-play: the agents that choose moves and the generator that turns their games into
validated records. It sits above the game contract and the encoders' value functions and
below every sink (files, Kafka), so a worker is the same whatever it writes to."""
from playstream.selfplay.generate import AGENTS, agent_names, generate_records

__all__ = ["AGENTS", "agent_names", "generate_records"]
