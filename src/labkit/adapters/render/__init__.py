"""Renderers that turn labkit's HTML into other formats (PDF with WeasyPrint)."""
