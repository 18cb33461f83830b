"""The subscriber lists: read and validated (YAML, CSV), then synced to the store."""
