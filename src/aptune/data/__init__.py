"""Data layer: the Example type, bundled offline tasks, users' own files, splits."""

from aptune.data.example import Example

__all__ = ["Example"]
