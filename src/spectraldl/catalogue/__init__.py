"""Predictions -> candidates: selection, cross-match with known stars, the gallery."""
