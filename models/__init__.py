"""Keras model code: build, fit, predict, to and from bytes; one model per file."""
