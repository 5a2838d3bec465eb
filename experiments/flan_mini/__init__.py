"""FLAN in miniature: a generated instruction collection, held-out-cluster experiments, ablations."""
