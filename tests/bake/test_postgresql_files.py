"""The database host's files: generated with database=postgresql only, and
their text, arguments and certificates, as any user can check them.

What they do on a real cluster and behind a real firewall is in
tests/system/test_postgresql_setup.py, test_postgresql_tls.py,
test_postgresql_firewall.py and test_postgresql_backup.py.
"""

import re
import subprocess

import pytest

from support.baking import TEMPLATE_DIR, bake_ok, cookiecutter_cli
from support.postgresql import PROJECT, ROLE, SSH_PORT, database_baker
from support.processes import run
from support.ufw import fake_ufw, ufw_calls

TRUSTED = "192.0.2.10, 198.51.100.0/24, 2001:db8::/64"
DATABASE_FILES = {
    "nftables": [f"deploy/firewall/nftables/{PROJECT}-database.nft"],
    "iptables": ["deploy/firewall/iptables/database.v4", "deploy/firewall/iptables/database.v6"],
    "ufw": ["deploy/firewall/ufw/ufw-database-rules.sh"],
}


@pytest.fixture(scope="module")
def bake(cookies_session):
    return database_baker(cookies_session, TEMPLATE_DIR)


@pytest.mark.parametrize("firewall", DATABASE_FILES)
def test_only_a_postgresql_project_gets_the_database_host(cookies, bake, firewall):
    sqlite = bake_ok(cookies, firewall=firewall, trusted_clients=TRUSTED).project_path
    postgresql = bake(firewall, TRUSTED)
    for relative in ["deploy/postgresql/setup.sh", *DATABASE_FILES[firewall]]:
        assert (postgresql / relative).is_file(), relative
        assert not (sqlite / relative).exists(), relative
    assert "database-client" in (postgresql / "deploy/pki.sh").read_text()
    assert "database" not in (sqlite / "deploy/pki.sh").read_text()
    assert "### Deploying the database host" in (postgresql / "README.md").read_text()
    assert "Deploying the database host" not in (sqlite / "README.md").read_text()


def test_nft_opens_5432_to_the_clients_alone(bake):
    text = (bake("nftables", TRUSTED) / DATABASE_FILES["nftables"][0]).read_text()
    assert "flush ruleset" not in text
    assert f"table inet {ROLE}_fw {{" in text  # the table apply.sh saves and restores
    assert "elements = { 192.0.2.10, 198.51.100.0/24 }" in text
    assert "elements = { 2001:db8::/64 }" in text
    opening = [line.strip() for line in text.splitlines() if re.search(r"\baccept\b", line)]
    ports = [line for line in opening if "dport" in line]
    assert [line.split(" accept")[0] for line in ports] == [
        f"tcp dport {SSH_PORT}",
        "ip saddr @database_clients_v4 tcp dport 5432",
        "ip6 saddr @database_clients_v6 tcp dport 5432",
    ]


def test_iptables_open_5432_to_the_clients_alone(bake):
    folder = bake("iptables", TRUSTED) / "deploy/firewall/iptables"
    expected = {"v4": ["192.0.2.10", "198.51.100.0/24"], "v6": ["2001:db8::/64"]}
    for family, clients in expected.items():
        rules = (folder / f"database.{family}").read_text().splitlines()
        opened = [line for line in rules if "--dport 5432" in line]
        assert [line.split()[3] for line in opened] == clients
        assert all(line.startswith("-A INPUT -s ") for line in opened)
        assert not any("--dports 80,443" in line for line in rules)


def test_ufw_script_adds_ssh_and_5432_per_client(bake, tmp_path):
    script = bake("ufw", TRUSTED) / DATABASE_FILES["ufw"][0]
    env, log = fake_ufw(tmp_path)
    allowed = run([script, "--dry-run"], env=env).stdout.splitlines()
    assert ufw_calls(log) == []
    assert allowed[3] == f"ufw limit {SSH_PORT}/tcp comment 'ssh, rate limited per source'"
    assert [line.split()[5] for line in allowed[4:]] == TRUSTED.replace(",", "").split()
    assert all(" to any port 5432 " in line for line in allowed[4:])


def setup_sh(project, *args):
    argv = ["bash", project / "deploy/postgresql/setup.sh", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_setup_help(bake):
    result = setup_sh(bake("nftables", TRUSTED), "--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: setup.sh --listen")
    assert "192.0.2.10 198.51.100.0/24 2001:db8::/64" in result.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([], "--listen ADDRESS is required"),
        (["--listen"], "--listen needs a value"),
        (["--listen", "0.0.0.0"], "--listen: '0.0.0.0' is every address"),
        (["--listen", "::"], "--listen: '::' is every address"),
        (["--listen", "192.0.2.300"], "--listen: '192.0.2.300' is not an IPv4 or IPv6"),
        (["--listen", "fe80::1%eth0"], "--listen: 'fe80::1%eth0' is not an IPv4 or IPv6"),
        (["--listen", "192.0.2.1", "--client", "0.0.0.0/0"], "--client: '0.0.0.0/0'"),
        (["--listen", "192.0.2.1", "--client", "::/0"], "--client: '::/0'"),
        (["--listen", "192.0.2.1", "--client", "192.0.2.9/33"], "prefix length of 1-32"),
        (["--listen", "192.0.2.1", "--client", "1::2::3"], "--client: '1::2::3' is not"),
        (["--listen", "192.0.2.1", "--auth", "md5"], "--auth: 'md5' is not cert or scram"),
        (["--listen", "192.0.2.1", "--port", "70000"], "--port: '70000' is not a port"),
        (["--listen", "192.0.2.1", "--data-dir", "relative"], "--data-dir: 'relative' is not"),
        (["--listen", "192.0.2.1", "--archive-dir", "/a b"], "--archive-dir: '/a b' has a"),
        (["--listen", "192.0.2.1", "--password-file", "/p"], "--password-file is for --auth"),
        (["--listen", "192.0.2.1", "--bogus"], "unknown argument: --bogus"),
    ],
)
def test_setup_bad_arguments_give_one_line_naming_them(bake, args, named):
    result = setup_sh(bake("nftables", TRUSTED), *args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("setup.sh: error: "), result.stderr
    assert named in lines[0] and lines[0].endswith("(see --help)"), lines


def test_setup_without_trusted_clients_needs_a_client(bake):
    result = setup_sh(bake("nftables", ""), "--listen", "192.0.2.1")
    assert result.returncode == 2
    assert "--client ADDRESS is required" in result.stderr


def openssl_text(path):
    return run(["openssl", "x509", "-noout", "-text", "-in", path]).stdout


def test_pki_database_certificates(bake, tmp_path):
    """The server's names the addresses dialled; each client's has CN = the role."""
    project = bake("nftables", TRUSTED)
    pki = ["bash", project / "deploy/pki.sh", "--dir", tmp_path / "tls"]
    run([*pki, "ca"])
    run([*pki, "database", "192.0.2.5", "db.example.com"])
    run([*pki, "database-client", "app1"])
    server = openssl_text(tmp_path / "tls/database.crt")
    assert "IP Address:192.0.2.5, DNS:db.example.com" in server
    assert "TLS Web Server Authentication" in server
    client = openssl_text(tmp_path / "tls/database-client-app1.crt")
    assert f"Subject: CN = {ROLE}" in client
    assert "TLS Web Client Authentication" in client
    again = run([*pki, "database-client", "app1"]).stdout
    assert "ok: " in again and "created" not in again
    for args in (["database"], ["database", "0.0.0.0"], ["database-client", "../x"]):
        result = run([*pki, *args], check=False)
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_pg_project_name_is_refused_with_postgresql(tmp_path):
    """PostgreSQL reserves role names that start with pg_: one line, nothing made."""
    result = cookiecutter_cli(tmp_path, "project=pg-store", "database=postgresql")
    assert result.returncode != 0
    assert result.error_lines("project") == [
        "error: project='pg-store' must not start with 'pg-' with database=postgresql: the "
        "database role takes the package's name, and PostgreSQL reserves names that start with pg_"
    ]
    assert result.left_behind() == []
