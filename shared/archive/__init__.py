"""Archives: GNU tar streams, codecs, bandwidth limit, and safe extraction.

- ``tarcreate.create``: tar → [limit] → zstd/gzip/pigz/lzop → the ``.dat`` file (vzdump §3).
- ``tarextract.extract``: decompress → header guard → tar into a root (pct §4.2.5).
- ``members.list_members``: look inside without extracting; ``vzdumpformat``: the vzdump
  archive format (its first members, the backed-up config).
- ``codecs``: names, magic bytes; ``decode``: bounded decompressing readers.
- ``targuard``: why a hostile archive cannot write outside the root (read its docstring).
"""
