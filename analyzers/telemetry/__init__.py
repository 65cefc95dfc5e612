"""Telemetry samples read, summarised and attributed without torch, so a run folder opens anywhere."""
