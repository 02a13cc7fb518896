"""ctkit's version, written in this one place: the package build reads it from here
(``pyproject.toml``), and the User-Agent of downloads and the migration handshake report it.

A constant rather than a look-up in the installed package's metadata
(``importlib.metadata.version``), which scans the installed distributions: about 20 ms of every
``pveam download`` and ``update``.
"""

VERSION = "0.1.0"
