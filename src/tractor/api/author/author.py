"""`from tractor.api.author import author` (as some pipelines import it): the same names as
`tractor.api.author` itself."""

from .base import *  # noqa: F401,F403
from .base import __all__  # noqa: F401
