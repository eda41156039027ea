"""Prefect flows: they wire tasks together and hold no TensorFlow code or path arithmetic."""
