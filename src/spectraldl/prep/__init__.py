"""Spectrum -> 140-pixel vector: the thesis' preprocessing and the H-alpha line measurements."""
