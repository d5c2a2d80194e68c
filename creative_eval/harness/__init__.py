"""lm-evaluation-harness integration: the `steered_hf` model (`model`), the `creative` tasks (`tasks`), and the
import hook that registers both in lm-eval 0.4.x (`autoload`)."""
