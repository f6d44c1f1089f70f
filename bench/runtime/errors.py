"""Exceptions that mean "the user asked for something that cannot run": reported once, by rank 0, as one
line, with a nonzero exit and no traceback. Anything else is a bug and aborts the job with a traceback from
the rank that raised it (see :mod:`bench.runtime`)."""


class UsageError(Exception):
    """Bad input: unknown names, out-of-range numbers, missing files, unwritable paths."""

    exit_code = 2
