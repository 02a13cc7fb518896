"""Archives: GNU tar streams, codecs, bandwidth limit, and safe extraction.

- ``tarcreate.create``: tar → [limit] → zstd/gzip/pigz/lzop → the ``.dat`` file (vzdump §3).
- ``tarextract.extract``: decompress → header guard → tar into a root (pct §4.2.5).
- ``members.list_members``: look inside without extracting.
- ``vzdumpformat``: a backup archive's config members, written and read back.
- ``codecs``: names, magic bytes; ``decode``: bounded decompressing readers.
- ``targuard``: why a hostile archive cannot write outside the root (read its docstring).
"""

from shared.archive.codecs import Compression, compression_from_name, sniff
from shared.archive.idmap import DEFAULT_UNPRIVILEGED, IdMapEntry, parse_idmap, usernsexec_argv
from shared.archive.members import iter_members, list_members
from shared.archive.pipeline import TransferStats
from shared.archive.tarcreate import CreateSpec, create, tar_create_command
from shared.archive.tarextract import extract, tar_extract_command
from shared.archive.tarformat import Member

__all__ = [
    "DEFAULT_UNPRIVILEGED",
    "Compression",
    "CreateSpec",
    "IdMapEntry",
    "Member",
    "TransferStats",
    "compression_from_name",
    "create",
    "extract",
    "iter_members",
    "list_members",
    "parse_idmap",
    "sniff",
    "tar_create_command",
    "tar_extract_command",
    "usernsexec_argv",
]
