"""labkit: provision hands-on IT infrastructure labs and grade them from evidence."""

__version__ = "0.1.0"
__all__ = ["__version__"]
