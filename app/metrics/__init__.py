"""The metric engine: Keras-exact metrics in numpy (see base.py and engine.py)."""
