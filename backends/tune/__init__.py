"""Hyperparameter and architecture search on Optuna over a spec's `{search: ...}` values."""
