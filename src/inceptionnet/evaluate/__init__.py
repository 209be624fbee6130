"""Metrics, multi-crop test-time augmentation and ensembles. `inceptionnet.evaluate(...)` runs
`inceptionnet.evaluate.runner.evaluate` (imported on first call)."""

from .._callable import make_module_callable


def evaluate(*args, **kwargs) -> dict:
    """Evaluate a checkpoint or an ensemble; see `inceptionnet.evaluate.runner.evaluate`."""
    from .runner import evaluate as run

    return run(*args, **kwargs)


make_module_callable(__name__, evaluate)
