"""Scores of samples: FID and the metrics beside it (image runs), mode coverage (synthetic runs)."""
