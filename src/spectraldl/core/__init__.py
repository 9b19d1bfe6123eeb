"""The Spectrum, its quality flags and the errors every stage raises.

The lowest layer: it imports no other part of spectraldl.
"""
