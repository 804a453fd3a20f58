"""Shared basics every layer may use: ids, errors, identity, files, aio, logs, metrics, units."""
