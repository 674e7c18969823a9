"""playstream: self-play game records to checksummed NPZ training data, incrementally."""
