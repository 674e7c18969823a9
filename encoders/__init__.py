"""Turn replayed games into training rows: features, policy targets and value targets."""
