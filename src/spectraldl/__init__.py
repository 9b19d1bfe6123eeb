"""spectraldl: find emission-line stars in large spectral archives with deep learning.

The stages meet through typed containers: `Spectrum` (one observed spectrum),
the HDF5 dataset (`spectraldl.io.dataset`), and the predictions table.
"""

from importlib.metadata import PackageNotFoundError, version

from spectraldl.core.spectrum import Spectrum, SpectrumMeta

try:
    __version__ = version("spectraldl")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["Spectrum", "SpectrumMeta", "__version__"]
