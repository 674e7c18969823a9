"""Kafka edge of the finalizer: the service that listens for chunk announcements and runs
the compaction passes (`playstream.compaction`) when a configuration has new chunks."""
