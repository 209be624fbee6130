"""Imports every model module so that each registers its names."""
from . import bn_inception, compact, googlenet, inception_resnet, inception_v3, inception_v4, resnet  # noqa: F401
