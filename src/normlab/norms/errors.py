"""The one user-facing exception type of normlab.

It lives in ``norms`` because ``norms`` imports nothing else of normlab and every other layer
may import ``norms``; ``normlab.errors`` re-exports it as the public location.
"""


class NormlabError(ValueError):
    """A user-facing error: bad input, with a message naming the key, file or value at fault."""
