"""Public home of :class:`NormlabError`, the one user-facing exception type."""

from normlab.norms.errors import NormlabError

__all__ = ["NormlabError"]
