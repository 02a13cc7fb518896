"""The backup engine: a job over guests, each archived in stop, suspend or snapshot mode."""
