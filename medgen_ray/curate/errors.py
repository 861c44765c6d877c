"""Data errors: bad input for one row, recorded on the row rather than raised to the job."""


class DataError(Exception):
    """Bad input data for one row (not a bug): recorded in the row's `error` column."""
