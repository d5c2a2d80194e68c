"""Where a direction comes from: the one resolver (`resolve`), the story bank its `stories` source reads
(`storybank`) and the human-calibrated direction (`calibration`)."""

from creative_eval.sources.resolve import (SOURCES, Named, check_fitting, check_layer, from_stories, humans_direction,
                                           parse, resolve, stories_direction, wq_states)

__all__ = ["SOURCES", "Named", "check_fitting", "check_layer", "from_stories", "humans_direction", "parse", "resolve",
           "stories_direction", "wq_states"]
