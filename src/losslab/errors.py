"""The one exception type for user mistakes: bad config values, missing files, unusable data."""

import re

# How torch re-raises in the main process an exception raised in a DataLoader worker: the exception's type, called
# with this header and the worker's whole formatted traceback (torch.utils.data._utils.worker, ExceptionWrapper).
_WORKER_HEADER = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


class LosslabError(Exception):
    """A problem the user can fix; the CLI prints its message (no traceback) and exits non-zero.

    Raised in a DataLoader worker (an image that cannot be read), it reaches the main process as torch rebuilds it:
    from the worker's traceback. It keeps only its own message there, so it reads the same with data.num_workers=0
    or more, one paragraph naming the file.
    """

    def __init__(self, message: str = "", *args):
        super().__init__(_from_worker(message, type(self)) if isinstance(message, str) else message, *args)


def _from_worker(message: str, kind: type) -> str:
    """The original message of a `kind` error that torch re-raises from a DataLoader worker; else `message`."""
    if not _WORKER_HEADER.match(message):
        return message
    # The traceback ends with the raised exception itself ("losslab.errors.LosslabError: MESSAGE"), after any
    # cause it chained.
    marker = f"\n{kind.__module__}.{kind.__qualname__}: "
    start = message.rfind(marker)
    return message[start + len(marker):].rstrip("\n") if start >= 0 else message
