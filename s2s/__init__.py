"""s2s: sequence-to-sequence translation and captioning with attention you can see."""

__version__ = "0.1.0"
