"""photocluster: organise a photo library by content."""

__version__ = "0.1.0"
