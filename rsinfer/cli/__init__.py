"""The ``rsinfer`` command line: one click command per module, shared options in options.py."""
