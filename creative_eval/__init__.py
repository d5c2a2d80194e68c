"""creative-eval: find a creativity direction in a language model, steer with it, judge with it."""

__version__ = "0.1.0"
