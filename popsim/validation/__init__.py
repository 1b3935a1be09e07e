"""Validation of the default model against published evidence (targets C1-C8)."""
