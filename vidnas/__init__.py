"""vidnas: hardware-aware architecture search for efficient video diffusion models."""

__version__ = "0.1.0"
