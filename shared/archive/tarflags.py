"""GNU tar's flags that backup and restore share."""

from __future__ import annotations

# (PVE::Storage::Plugin::COMMON_TAR_FLAGS)
COMMON_TAR_FLAGS = [
    "--one-file-system",
    "-p",
    "--sparse",
    "--numeric-owner",
    "--acls",
    "--xattrs",
    "--xattrs-include=user.*",
    "--xattrs-include=security.capability",
    "--warning=no-file-ignored",
    "--warning=no-xattr-write",
]
