"""TLS and the network authentication methods the site writes into pg_hba.conf.

A site with a certificate and key (db.toml tls_cert, tls_key) takes TCP connections only over
TLS; a client that asks for verify-full checks the certificate against its CA and the host
name.  LDAP and GSSAPI are written for connections from other hosts as db.toml's auth says;
this machine has no LDAP or Kerberos server, so the tests check the server accepts the rules.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from conftest import dbctl

from tractorcli.config import load_settings
from tractorcli.db.connection import connect
from tractorcli.errors import ConfigError

OPENSSL = shutil.which("openssl")


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _openssl(*args: str, cwd: Path) -> None:
    ok(subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60))


def make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_server_cert(d: Path, ca: str) -> None:
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=d)


def client(tmp: Path, s, name: str, **keys: str) -> Path:
    """A workstation's config: db.toml naming the host, port, its login and how to check the server."""
    d = tmp / name
    d.mkdir()
    extra = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    (d / "tractor.toml").write_text(f'data_dir = "{d / "data"}"\n')
    (d / "db.toml").write_text(f'host = "127.0.0.1"\nport = {s.db.port}\ndbname = "{s.db.dbname}"\n'
                               f'login = "ann"\n{extra}')
    return d


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_tls_is_required_over_tcp_and_verify_full_checks_the_server(tmp_site, tmp_path):
    make_ca(tmp_path, "ca")
    make_ca(tmp_path, "other")
    make_server_cert(tmp_path, "ca")
    cfg, s = tmp_site(db_toml=f'password = "site pw"\ntls_cert = "{tmp_path / "server.crt"}"\n'
                              f'tls_key = "{tmp_path / "server.key"}"\n')
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--add-user", "ann", "--password-file", "-", input="ann pw\n"))

    def who(d: Path) -> str:
        with connect(load_settings(d), autocommit=True) as conn:
            return conn.execute("SELECT current_user AS u, (SELECT ssl FROM pg_stat_ssl "
                                "WHERE pid = pg_backend_pid()) AS tls").fetchone()

    # checked against the CA and the host name: TLS, as ann
    good = client(tmp_path, s, "good", password="ann pw", sslmode="verify-full", sslrootcert=str(tmp_path / "ca.crt"))
    assert who(good) == {"u": "ann", "tls": True}
    # a plain connection is refused by the server, even with the right password
    plain = client(tmp_path, s, "plain", password="ann pw", sslmode="disable")
    with pytest.raises(Exception, match="no encryption"):
        who(plain)
    # a certificate from another CA is refused by the client
    forged = client(tmp_path, s, "forged", password="ann pw", sslmode="verify-full",
                    sslrootcert=str(tmp_path / "other.crt"))
    with pytest.raises(Exception, match="certificate verify failed"):
        who(forged)
    # TLS without the password: refused
    nopw = client(tmp_path, s, "nopw", sslmode="require")
    with pytest.raises(Exception, match="password"):
        who(nopw)
    # the site's own programs on its host use the socket: unchanged
    with connect(s, autocommit=True) as conn:
        assert conn.execute("SELECT current_user AS u").fetchone()["u"] == s.db.user


def test_tls_settings_are_checked(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "db.toml").write_text('tls_cert = "/x/server.crt"\n')
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        load_settings(cfg)
    (cfg / "db.toml").write_text('sslmode = "verify-everything"\n')
    with pytest.raises(ConfigError, match="sslmode: expected one of disable"):
        load_settings(cfg)
    (cfg / "db.toml").write_text('auth = "trust"\n')
    with pytest.raises(ConfigError, match="auth: expected one of scram-sha-256, ldap, gss"):
        load_settings(cfg)


@pytest.mark.parametrize("auth, options", [
    ("ldap", 'ldapserver=ldap.example.com ldapbasedn=\\"dc=example,dc=com\\" ldapsearchattribute=uid'),
    ("gss", "include_realm=0"),
])
def test_ldap_and_gssapi_rules_are_written_for_other_hosts(tmp_site, auth, options):
    cfg, s = tmp_site(db_toml=f'password = "site pw"\nlisten_addresses = ["127.0.0.1", "127.0.0.3"]\n'
                              f'auth = "{auth}"\nauth_options = "{options}"\n')
    ok(dbctl(cfg, "--start-for-engine"))
    with connect(s, autocommit=True) as conn:
        rules = conn.execute("SELECT type, address, auth_method, options, error FROM pg_hba_file_rules "
                             "ORDER BY line_number").fetchall()
    remote = [r for r in rules if r["address"] == "0.0.0.0"]
    if auth == "gss" and remote and remote[0]["error"] and "not supported" in remote[0]["error"]:
        pytest.skip(f"this PostgreSQL has no GSSAPI: {remote[0]['error']}")
    assert [r["error"] for r in rules] == [None] * len(rules)
    assert remote and remote[0]["auth_method"] == auth
    assert all(r["auth_method"] == "scram-sha-256" for r in rules if r["address"] in ("127.0.0.1", "::1"))
    if auth == "ldap":
        assert "ldapserver=ldap.example.com" in remote[0]["options"]
