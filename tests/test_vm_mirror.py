"""host_debian_mirror reads the host's apt sources, one-line and deb822, and picks Debian's main archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.image.mirror import ENV_OVERRIDE, MirrorNotFound, apt_sources, host_debian_mirror, host_debian_security_mirror

MAIN = "http://mirror.example.test/debian"
SECURITY = "http://mirror.example.test/debian-security"
VENDOR = "https://vendor.example.test/apt"


def _apt_dir(tmp_path: Path, sources_list: str = "", parts: dict[str, str] | None = None) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    if sources_list:
        (tmp_path / "sources.list").write_text(sources_list)
    for name, text in (parts or {}).items():
        (tmp_path / "sources.list.d" / name).write_text(text)
    return tmp_path


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)


def test_one_line_sources_skip_security_and_deb_src(tmp_path: Path) -> None:
    apt = _apt_dir(tmp_path, f"""# a comment
deb-src {MAIN} trixie main
deb {SECURITY} trixie-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MAIN}/ trixie main contrib
""")
    assert host_debian_mirror(apt) == MAIN


def test_deb822_sources_with_security_stanza_first(tmp_path: Path) -> None:
    apt = _apt_dir(tmp_path, parts={"debian.sources": f"""Types: deb
URIs: {SECURITY}
Suites: bookworm-security
Components: main

Types: deb deb-src
# a comment inside the stanza
URIs: {MAIN}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""})
    assert host_debian_mirror(apt) == MAIN


def test_vendor_repositories_and_disabled_stanzas_are_ignored(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        f"deb {VENDOR} nodistro main\n",
        {
            "a-disabled.sources": "Types: deb\nURIs: http://old.example.test/debian\n"
                                  "Suites: trixie\nComponents: main\nEnabled: no\n",
            "b-vendor.list": f"deb {VENDOR} cloud-sdk-bookworm main\n",
            "c-debian.sources": f"Types: deb\nURIs: {MAIN}\nSuites: trixie\nComponents: main\n",
            "d-ignored.list.disabled": "deb http://never.example.test/debian trixie main\n",
        },
    )
    assert host_debian_mirror(apt) == MAIN


def test_entries_are_read_in_apt_order(tmp_path: Path) -> None:
    apt = _apt_dir(tmp_path, f"deb {MAIN} trixie main\n",
                   {"x.list": "deb http://second.example.test/debian trixie main\n"})
    assert [s.uri for s in apt_sources(apt)] == [MAIN, "http://second.example.test/debian"]


def test_no_debian_archive_is_an_error_naming_the_override(tmp_path: Path) -> None:
    apt = _apt_dir(tmp_path, f"deb {SECURITY} trixie-security main\ndeb {VENDOR} nodistro main\n")
    with pytest.raises(MirrorNotFound, match=ENV_OVERRIDE):
        host_debian_mirror(apt)


def test_environment_override_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_OVERRIDE, "http://local.example.test/debian/")
    apt = _apt_dir(tmp_path, f"deb {MAIN} trixie main\n")
    assert host_debian_mirror(apt) == "http://local.example.test/debian"


def test_the_security_archive_is_the_hosts_security_source(tmp_path: Path) -> None:
    apt = _apt_dir(tmp_path, parts={"debian.sources": f"""Types: deb
URIs: {MAIN}
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://security.example.test/debian-security/
Suites: bookworm-security
Components: main
"""})
    assert host_debian_security_mirror(apt) == "http://security.example.test/debian-security"


def test_without_a_security_source_it_is_the_main_archives_sibling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = _apt_dir(tmp_path, f"deb {MAIN} trixie main\ndeb {VENDOR} nodistro-security main\n")
    assert host_debian_security_mirror(apt) == MAIN + "-security"
    monkeypatch.setenv(ENV_OVERRIDE, "http://local.example.test/debian/")
    (tmp_path / "o").mkdir()
    apt = _apt_dir(tmp_path / "o", f"deb {SECURITY} trixie-security main\n")
    assert host_debian_security_mirror(apt) == "http://local.example.test/debian-security"


def test_the_mirror_cache_maps_the_security_suite_the_base_role_asks_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The base role's default security mirror is <repositories.debian>-security: /debian-security on the cache."""
    from infra.vm import mirror_cache
    monkeypatch.setattr(mirror_cache, "host_debian_mirror", lambda: MAIN)
    monkeypatch.setattr(mirror_cache, "host_debian_security_mirror", lambda: SECURITY)
    conf = mirror_cache._configuration(tmp_path)
    assert mirror_cache.GUEST_URL.endswith("/debian")
    assert "Remap-debrep: /debian ; file:backends_debian\n" in conf["acng.conf"]
    assert "Remap-debsec: /debian-security ; file:backends_debian_security\n" in conf["acng.conf"]
    assert conf["backends_debian"] == MAIN + "/\n" and conf["backends_debian_security"] == SECURITY + "/\n"
