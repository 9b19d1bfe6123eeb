"""The classify stage: a model over datasets or FITS trees -> a predictions table."""
