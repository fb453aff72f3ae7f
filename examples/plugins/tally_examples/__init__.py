"""Example Tally plugins: the Keras guide's custom metrics, with numpy in place of tf."""
