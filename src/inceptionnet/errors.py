"""Errors a user can cause. The CLI prints their one-line message and exits with code 2."""


class InceptionNetError(Exception):
    """Base class for every user-facing error: bad options, bad files, bad inputs."""


class ConfigError(InceptionNetError):
    """An option or a combination of options that cannot work."""


class DataError(InceptionNetError):
    """A dataset path, folder layout or image file that cannot be used."""


class WeightsError(InceptionNetError):
    """A checkpoint or state_dict that does not fit the model it is loaded into."""


class InputSizeError(InceptionNetError, ValueError):
    """An input tensor with the wrong shape for the model (too small, wrong channel count)."""


class TrainingError(InceptionNetError):
    """Training cannot go on (for example the loss stayed non-finite for too many steps in a row)."""


class RunStopped(Exception):
    """Not an error: a training run stopped cleanly on a signal after writing last.pt. The CLI prints its
    message and exits with 128 + the signal's number, as a process killed by it would."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class PartialLoadWarning(UserWarning):
    """Weights loaded only in part (`strict=False`): some keys were missing, unexpected or mis-shaped."""


class NotAModelFileError(WeightsError):
    """A file given as a model that holds no inceptionnet model: text, foreign data, pickled code, or weights
    without the metadata that says which model they belong to."""
