"""The aplinfo appliance index format: parsing as Proxmox's ``APLInfo.pm`` really behaves.

Records are paragraphs (separated by truly empty lines). The regular expressions below are
Perl's, translated one to one, so their quirks carry over: ``Description`` must be the last
field, continuation lines are joined with single spaces, field names are lower-cased, a
whitespace-only line does not separate records, a value of ``0`` counts as missing.

ctkit adds one rule on top: a record whose template name is not a plain file name with a
template extension (e.g. a ``.tar.lz4`` Location, where upstream would use the whole URL as the
name) is skipped with a warning, in both modes. It could never be stored as a template.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import VerifyError
from shared.printable import printable
from shared.storage.volid import NAME_MAX
from shared.storage.volid import is_template_name as volid_template_name

NEWS_PACKAGE = "pve-web-news"
# A template downloads into ``<name>.tmp_dwnl`` beside its final name (index.download): an
# index's name must leave room for it (a 250-byte name failed the download, not the update).
TMP_SUFFIX = ".tmp_dwnl"
REQUIRED = ("package", "type", "os", "version", "infopage")

_A = re.ASCII
DESCRIPTION_RE = re.compile(r"Description:\s*([^\n]*)(\n\s+.*)?\Z", re.S | re.I | _A)
# ``:\s*+`` is possessive: Perl's greedy ``\s*`` never succeeds by giving white space back
# here (the value must start on a line of its own text), and Python's backtracking into a
# long run of spaces was quadratic.
VERSION_RE = re.compile(r"Version:\s*+(.*\S)\s*\n", re.I | _A)
TYPE_RE = re.compile(r"Type:\s*+(.*\S)\s*\n", re.I | _A)
FIELD_RE = re.compile(r"([^:]+):\s*+(.*\S)\s*\n", _A)
VERSION_VALUE_RE = re.compile(r"\d[a-zA-Z0-9.+\-:~]*(?:-\d+)?", _A)
TEMPLATE_FROM_LOCATION_RE = re.compile(
    r".*/([^/]+\.(?:tar(?!\.)|tar\.(?:gz|xz|zst|bz2)))$", re.IGNORECASE
)
ABSOLUTE_URL_RE = re.compile(r"[a-zA-Z]+://")


class AplinfoError(VerifyError):
    """A strict parse failed; the text is upstream's (``unable to parse appliance record: ...``)."""


def perl_true(value: str | None) -> bool:
    return bool(value) and value != "0"


@dataclass
class Appliance:
    """One record. ``fields`` holds every ``Name: value`` line (lower-case names) except
    Description, which is split into ``headline`` and the joined long ``description``."""

    fields: dict[str, str] = field(default_factory=dict)
    headline: str | None = None
    description: str = ""
    template: str = ""
    url: str = ""
    source: str = ""
    source_name: str = ""
    mirror_urls: tuple[str, ...] = ()

    def get(self, key: str) -> str | None:
        return self.fields.get(key)

    @property
    def package(self) -> str:
        return self.fields.get("package", "")

    @property
    def version(self) -> str:
        return self.fields.get("version", "")

    @property
    def type(self) -> str:
        return self.fields.get("type", "")

    @property
    def os(self) -> str:
        return self.fields.get("os", "")

    @property
    def section(self) -> str:
        value = self.fields.get("section")
        return value if perl_true(value) and value is not None else "unknown"

    @property
    def architecture(self) -> str | None:
        return self.fields.get("architecture")

    @property
    def location(self) -> str | None:
        return self.fields.get("location")

    @property
    def urls(self) -> tuple[str, ...]:
        """The download URL, then the same path on each mirror of the source."""
        return (self.url, *self.mirror_urls)

    def to_dict(self) -> dict[str, Any]:
        """Every field, plus the derived ones, for JSON output."""
        return {
            "template": self.template,
            "section": self.section,
            "architecture": self.architecture,
            "package": self.package,
            "version": self.version,
            "type": self.type,
            "os": self.os,
            "url": self.url,
            "mirror_urls": list(self.mirror_urls),
            "source": self.source,
            "source_name": self.source_name,
            "headline": self.headline or "",
            "description": self.description,
            "infopage": self.fields.get("infopage"),
            "maintainer": self.fields.get("maintainer"),
            "md5sum": self.fields.get("md5sum"),
            "sha512sum": self.fields.get("sha512sum"),
            "fields": dict(self.fields),
        }


# Proxmox's and TurnKey's indexes hold about a hundred records of about fifteen fields. Parsed,
# an index costs many times its size: 850 MB for a 66 MB one of 9 million fields (under the
# 64 MiB download limit), on every pveam command that reads it.
MAX_RECORDS = 10_000
MAX_FIELDS = 256


@dataclass
class ParseResult:
    appliances: list[Appliance] = field(default_factory=list)
    news: Appliance | None = None
    warnings: list[str] = field(default_factory=list)


def split_records(text: str) -> list[str]:
    """Perl's paragraph mode (``$/ = ""``) plus ``chomp``: only empty lines separate."""
    body = text.lstrip("\n")
    return [rec.rstrip("\n") for rec in re.split(r"\n{2,}", body) if rec.strip("\n")]


class _Parser:
    def __init__(self, base_url: str, strict: bool, source_name: str, mirrors: Sequence[str]):
        self.base = base_url.rstrip("/")
        self.strict = strict
        self.source_name = source_name
        self.mirrors = tuple(m.rstrip("/") for m in mirrors)
        self.result = ParseResult()

    def problem(self, msg: str) -> None:
        msg = printable(msg)  # the index's text: it reaches a terminal and the update log
        if self.strict:
            raise AplinfoError(msg)
        self.result.warnings.append(msg)

    def record(self, rec: str) -> None:
        res = Appliance()
        pos = 0  # matched from a position: cutting the record after each field was quadratic
        while pos < len(rec) and not (pos == len(rec) - 1 and rec[pos] == "0"):
            if m := DESCRIPTION_RE.match(rec, pos):
                res.headline = m.group(1)
                long = m.group(2) or ""
                long = re.sub(r"\n\s+", " ", long, flags=_A)
                res.description = long.strip(" \t\n\r\f\v")
                break
            if m := VERSION_RE.match(rec, pos):
                if VERSION_VALUE_RE.fullmatch(m.group(1)):
                    res.fields["version"] = m.group(1)
                else:
                    self.problem(f"unable to parse appliance record: version = '{m.group(1)}'")
            elif m := TYPE_RE.match(rec, pos):
                if m.group(1) in ("openvz", "lxc"):
                    res.fields["type"] = m.group(1)
                else:
                    self.problem(f"unable to parse appliance record: unknown type '{m.group(1)}'")
            elif m := FIELD_RE.match(rec, pos):
                res.fields[m.group(1).lower()] = m.group(2)
                if len(res.fields) > MAX_FIELDS:
                    self.problem(f"unable to parse appliance record: more than {MAX_FIELDS} fields")
                    return
            else:
                self.problem(f"unable to parse appliance record: {rec[pos:]}")
                res = Appliance()
                break
            pos = m.end()
        self.finish(res)

    def finish(self, res: Appliance) -> None:
        if res.package == NEWS_PACKAGE and perl_true(res.description):
            self.result.news = res
            return
        if not all(perl_true(res.fields.get(k)) for k in REQUIRED):
            self.problem("found incomplete appliance records")
            return
        self.locate(res)
        if not is_template_name(res.template):
            where = res.location or res.template
            self.result.warnings.append(
                printable(
                    f"skipping appliance record '{res.package}': "
                    f"unsupported template location '{where}'"
                )
            )
            return
        res.source, res.source_name = self.base, self.source_name
        self.result.appliances.append(res)

    def locate(self, res: Appliance) -> None:
        """Template name and URL(s): from Location, or the legacy name built from the fields."""
        location = res.location
        if perl_true(location) and location is not None:
            m = TEMPLATE_FROM_LOCATION_RE.fullmatch(location)
            res.template = m.group(1) if m else location
            if ABSOLUTE_URL_RE.match(location):
                res.url = location
            else:
                res.url = f"{self.base}/{location}"
                res.mirror_urls = tuple(f"{m}/{location}" for m in self.mirrors)
            return
        arch = res.architecture if perl_true(res.architecture) else "i386"
        name = f"{res.os}-{res.package}_{res.version}_{arch}.tar.gz"
        res.template = name.replace(f"{res.os}-{res.os}-", f"{res.os}-", 1)
        rel = f"{res.section}/{res.template}"
        res.url = f"{self.base}/{rel}"
        res.mirror_urls = tuple(f"{m}/{rel}" for m in self.mirrors)


def is_template_name(name: str) -> bool:
    """A template file name as storage accepts it (one component, not hidden, not longer
    than a file name can be once the download's :data:`TMP_SUFFIX` is added) that is also
    safe to show and to split on: an index is input, and its names reach terminals and
    ``awk``, so no control character and no white space."""
    return (
        volid_template_name(name)
        and len(os.fsencode(name)) + len(TMP_SUFFIX) <= NAME_MAX
        and name.isprintable()
        and not any(c.isspace() for c in name)
    )


def parse_aplinfo(
    text: str,
    base_url: str,
    *,
    strict: bool,
    source_name: str = "",
    mirrors: Sequence[str] = (),
) -> ParseResult:
    """Parse an index. ``strict`` (update): the first problem raises :class:`AplinfoError`.
    Lenient (stored files): problems become warnings and the bad record is skipped."""
    parser = _Parser(base_url, strict, source_name, mirrors)
    for count, rec in enumerate(split_records(text)):
        if count == MAX_RECORDS:
            parser.problem(f"more than {MAX_RECORDS} appliance records - the rest is ignored")
            break
        parser.record(rec)
    return parser.result
