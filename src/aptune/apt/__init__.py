"""APT's building blocks: mining weakness cases, sampling wrong answers, building preference pairs.

The method that strings them into rounds is ``aptune.methods.apt``; these modules take items
and rows and return rows, and never touch a run directory.
"""
