"""Imports every model module so that each registers its names."""
