"""Errors reported to the user as one line at the CLI edge."""


class RsinferError(Exception):
    """A problem the user can act on; the message names the file and what is wrong."""


class InputError(RsinferError):
    """The input raster (or a band/tile choice for it) cannot be used."""


class ModelError(RsinferError):
    """The model, its weights or its configuration cannot be used."""
