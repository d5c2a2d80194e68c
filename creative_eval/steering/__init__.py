"""The steering stage: the hooks that add lambda * a at block l (`hooks`), probe-gated steering (`gating`) and the
stories of the three conditions on the HF backend (`generate`); the setting and the conditions' rule, which every
backend follows (`settings`)."""

from creative_eval.steering.settings import DEFAULT_ALPHA, NORMS, POSITIONS, Steering, check

__all__ = ["DEFAULT_ALPHA", "NORMS", "POSITIONS", "Steer", "Steering", "check", "scale", "steering"]


def __getattr__(name: str):
    """The hooks need torch; imported on first use so the settings (read by every command line) stay light."""
    if name in ("Steer", "scale", "steering"):
        from creative_eval.steering import hooks

        return getattr(hooks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
