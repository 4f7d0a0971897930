"""Runs on disk: the job that trains them, their dirs, checkpoints, identities, locks and signals."""
