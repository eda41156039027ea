"""quantflow: declarative, versioned, scheduled TFLite quantization pipelines."""

__version__ = "0.1.0"
