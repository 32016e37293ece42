"""Training data: clean-up resize, datasets of HR crops, the on-device Degrader, offline pairs."""
