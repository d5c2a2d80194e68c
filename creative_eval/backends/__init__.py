"""Engines outside transformers that make the same stories: one folder per engine."""
