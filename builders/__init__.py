"""Turning a preset into a trained zoo: plan, work units, training engines, executor, shards, merge."""
