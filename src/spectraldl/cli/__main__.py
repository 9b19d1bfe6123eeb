"""``python -m spectraldl.cli``: the same as the ``spectraldl`` command."""

from spectraldl.cli import main

main()
