"""Fixtures for the index tests: throw-away keys, pveam's keyring, a server publishing indexes."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from index import keys as pveam_keys
from index.sources import Source
from shared import paths
from shared.http import RetryPolicy
from tests.shared.gpg_keys import TestKeys, make_keys
from tests.shared.http_server import TestServer

FAST = RetryPolicy(retries=2, backoff=0.01)


@pytest.fixture(scope="session")
def gpg_keys() -> Iterator[TestKeys]:
    """``trusted`` and ``other`` get imported into pveam's keyring; ``stranger`` never does."""
    k = make_keys("trusted", "other", "stranger")
    try:
        yield k
    finally:
        k.close()


@pytest.fixture
def empty_keyring(ctroot: Path) -> Path:
    """pveam's keyring without the shipped release keys (as if they had been removed)."""
    home = paths.pveam_gnupghome()
    home.mkdir(parents=True, mode=0o700)
    (home / pveam_keys.SEEDED_MARKER).write_text("")
    return home


@pytest.fixture
def trusted_ring(ctroot: Path, gpg_keys: TestKeys) -> TestKeys:
    """pveam's keyring (under the scratch root) holding the ``trusted`` and ``other`` keys."""
    pveam_keys.add_key(gpg_keys.public["trusted"])
    pveam_keys.add_key(gpg_keys.public["other"])
    return gpg_keys


@pytest.fixture
def srv(no_proxy_env: pytest.MonkeyPatch) -> Iterator[TestServer]:
    with TestServer() as server:
        yield server


def stanza(
    package: str,
    version: str = "1.0-1",
    *,
    section: str = "system",
    os: str = "debian-12",
    arch: str = "amd64",
    location: str | None = None,
    sha512: str | None = None,
    md5: str | None = None,
    description: str = "Test template",
) -> str:
    loc = location if location is not None else f"{section}/{package}_{version}_{arch}.tar.zst"
    lines = [
        f"Package: {package}",
        f"Version: {version}",
        "Type: lxc",
        f"OS: {os}",
        f"Section: {section}",
        f"Architecture: {arch}",
        f"Location: {loc}",
    ]
    if md5:
        lines.append(f"md5sum: {md5}")
    if sha512:
        lines.append(f"sha512sum: {sha512}")
    lines += ["Infopage: https://example.org/", f"Description: {description}"]
    return "\n".join(lines) + "\n"


def index_text(*stanzas: str) -> str:
    return "\n".join(stanzas)


@dataclass
class Publisher:
    """Puts ``<prefix>/<index>.asc`` and ``.gz`` (or the plain index) on the test server."""

    srv: TestServer
    keys: TestKeys
    workdir: Path
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def source(self, name: str, prefix: str, **kw: object) -> Source:
        fprs = kw.pop("fingerprints", (self.keys.fprs["trusted"],))
        return Source(name, self.srv.url(prefix), "aplinfo.dat", fprs, **kw)  # type: ignore[arg-type]

    def publish(
        self,
        prefix: str,
        text: str,
        *,
        signer: str = "trusted",
        when: int | None = None,
        gz: bool = True,
        plain: bool = False,
        tamper: bool = False,
        bad_gzip: bool = False,
        index: str = "aplinfo.dat",
    ) -> bytes:
        n = next(self.counter)
        data = self.workdir / f"index-{n}"
        data.write_text(text)
        sig = self.workdir / f"index-{n}.asc"
        self.keys.sign(data, sig, signer, when=when)
        raw = data.read_bytes()
        if tamper:
            raw = raw.replace(b"Version: 1.0-1", b"Version: 1.0-2", 1)
        self.srv.add(f"{prefix}/{index}.asc", sig.read_bytes())
        if gz:
            self.srv.add(
                f"{prefix}/{index}.gz", b"not gzip at all" if bad_gzip else gzip.compress(raw)
            )
        else:
            self.srv.routes.pop(f"{prefix}/{index}.gz", None)
        if plain:
            self.srv.add(f"{prefix}/{index}", raw)
        return raw


@pytest.fixture
def publisher(srv: TestServer, trusted_ring: TestKeys, tmp_path: Path) -> Publisher:
    work = tmp_path / "published"
    work.mkdir()
    return Publisher(srv, trusted_ring, work)
