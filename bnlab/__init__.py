"""bnlab: what batch normalization really does, with evidence."""
from bnlab.resolvers import REPO_ROOT, register_resolvers

register_resolvers()

__all__ = ["REPO_ROOT"]
