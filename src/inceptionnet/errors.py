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


class PartialLoadWarning(UserWarning):
    """Weights loaded only in part (`strict=False`): some keys were missing, unexpected or mis-shaped."""


class NotAModelFileError(WeightsError):
    """A file given as a model that holds no inceptionnet model: text, foreign data, pickled code, or weights
    without the metadata that says which model they belong to."""
