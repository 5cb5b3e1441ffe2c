"""Scoring parameter-similarity methods: the method contract, baselines, LPS, the protocols on the
archive's fixed splits, and the leaderboard runner."""
