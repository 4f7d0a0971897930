"""The commands (gl-train, gl-eval, gl-report, gl-landscape): Hydra glue and one line per user error."""
