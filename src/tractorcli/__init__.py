"""tractorcli: a render-farm job queue that speaks Pixar Tractor's languages.

Importing the package is cheap on purpose: `--help` and shell completion
must not pay for psycopg or rich.
"""

__version__ = "0.1.0"
