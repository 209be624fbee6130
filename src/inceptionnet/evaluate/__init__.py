"""Metrics, multi-crop test-time augmentation and ensembles."""
