"""The experiments: the layer sweep (`sweeps`), the three-criteria sweep (`criteria`), the steering frontier
(`frontier`, `frontier_stats`, `coherence`), the agreement suite (`suite`) and template choice (`selection`)."""
