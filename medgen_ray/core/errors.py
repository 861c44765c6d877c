"""Data errors: bad input for one row, recorded on the row rather than raised to the job."""

import av


class DataError(Exception):
    """Bad input data for one row (not a bug): recorded in the row's `error` column."""


DATA_ERRORS = (DataError, av.FFmpegError)  # what a stage records on the row; anything else is a bug


class UnsupportedVersion(ImportError):
    """An installed dependency outside the range this release was tested with (core/ray_compat.py)."""
