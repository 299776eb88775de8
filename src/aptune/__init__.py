"""aptune: make a language model a domain specialist without losing its general skills."""

__version__ = "0.1.0"
