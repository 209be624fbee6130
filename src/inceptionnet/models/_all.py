"""Imports every model module so that each registers its names."""
from . import compact, googlenet, resnet  # noqa: F401
