"""Tables and figures of finished runs, beside the paper's numbers."""
