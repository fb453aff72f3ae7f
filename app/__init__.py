"""Tally: Keras-exact streaming metrics as a service."""
