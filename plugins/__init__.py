"""Game plugins shipped with playstream, each an optional extra (docs/PLUGINS.md)."""
