"""The one exception type for user mistakes: bad config values, missing files, unusable data."""


class LosslabError(Exception):
    """A problem the user can fix; the CLI prints its message (no traceback) and exits non-zero."""
