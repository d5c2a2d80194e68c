"""Where a direction comes from: the one resolver (`resolve`), the story bank its `stories` source reads
(`storybank`) and the human-calibrated direction (`calibration`)."""

from creative_eval.sources.resolve import (HUMAN_SOURCES, SOURCES, Named, check_fitting, check_layer, from_stories,
                                           humans_direction, label_set, label_states, parse, resolve,
                                           stories_direction)

__all__ = ["HUMAN_SOURCES", "SOURCES", "Named", "check_fitting", "check_layer", "from_stories", "humans_direction",
           "label_set", "label_states", "parse", "resolve", "stories_direction"]
