"""Refuse bad answers before cookiecutter writes any file of the project.

Every answer is checked; each bad one gets ONE line on stderr that names the
variable, shows its value and says what is allowed. Then the hook exits 1 and
cookiecutter removes the half-made project directory.

How the answers get here: cookiecutter renders this file with Jinja before it
runs it, so an answer pasted in as text would become Python source. Instead
each answer is encoded twice with Jinja's ``tojson``:

* the inner ``tojson`` turns the value into JSON text: pure ASCII (non-ASCII
  and control characters become \\u00e9-style escapes), no raw quote can end it;
* the outer ``tojson`` turns that text into a JSON string literal. Its only
  escapes are \\" and \\\\, which mean the same in Python, so the literal
  is a valid Python string whatever the answer holds (quotes, triple quotes,
  backslashes, braces, newlines, code).

``json.loads`` then turns the string back into the value: it is only ever
data. tests/bake/test_hooks.py proves it with a value built to break out.
"""

import contextlib
import ipaddress
import json
import keyword
import re
import sys

ANSWERS = {
    "project": json.loads({{ cookiecutter.project | tojson | tojson }}),
    "package": json.loads({{ cookiecutter["__package"] | tojson | tojson }}),
    "description": json.loads({{ cookiecutter.description | tojson | tojson }}),
    "author": json.loads({{ cookiecutter.author | tojson | tojson }}),
    "email": json.loads({{ cookiecutter.email | tojson | tojson }}),
    "domain": json.loads({{ cookiecutter.domain | tojson | tojson }}),
    "public_port": json.loads({{ cookiecutter.public_port | tojson | tojson }}),
    "internal_port": json.loads({{ cookiecutter.internal_port | tojson | tojson }}),
    "ssh_port": json.loads({{ cookiecutter.ssh_port | tojson | tojson }}),
    "harden": json.loads({{ cookiecutter.harden | tojson | tojson }}),
    "service_user": json.loads({{ cookiecutter.service_user | tojson | tojson }}),
    "firewall": json.loads({{ cookiecutter.firewall | tojson | tojson }}),
    "trusted_clients": json.loads({{ cookiecutter.trusted_clients | tojson | tojson }}),
    "anonymous_reads": json.loads({{ cookiecutter.anonymous_reads | tojson | tojson }}),
    "database": json.loads({{ cookiecutter.database | tojson | tojson }}),
}

PROJECT_REGEX = r"[a-z][a-z0-9-]{1,30}[a-z0-9]"
POSIX_USER_REGEX = r"[a-z_][a-z0-9_-]{0,31}"
HOSTNAME_LABEL_REGEX = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
PORT_REGEX = r"[1-9][0-9]{0,4}"
FIREWALLS = ("nftables", "ufw", "iptables")
DATABASES = ("sqlite", "postgresql")
MAX_TEXT = 500

# Import names the generated project, its tests or its tooling already use: a
# package of the same name would shadow them (or be shadowed).
DEPENDENCY_IMPORT_NAMES = frozenset(
    """
    flask werkzeug jinja2 click itsdangerous markupsafe blinker
    flask_talisman flask_openapi3 flask_httpauth pydantic pydantic_core annotated_types
    typing_extensions typing_inspection gunicorn dotenv psutil honcho prometheus_client
    psycopg psycopg_pool psycopg_binary
    pytest _pytest pluggy iniconfig py ruff urllib3 requests certifi idna
    charset_normalizer cookiecutter pytest_cookies binaryornot arrow slugify
    text_unidecode yaml rich pygments markdown_it mdurl dateutil tzdata
    packaging pip setuptools pkg_resources wheel _distutils_hack six
    drheader playwright greenlet coverage hypothesis
    """.split()
)

# Names that are not modules but would still clash inside the generated tree.
RESERVED_PACKAGES = frozenset({"tests", "test", "conftest", "src", "setup", "deploy"})

# /etc/PROJECT and /var/lib/PROJECT are created root:GROUP 0750 at deploy time:
# a project named like a directory a Debian host already has would take it over.
SYSTEM_DIRECTORY_NAMES = frozenset(
    """
    alternatives apache2 apparmor apt ca-certificates chrony console-setup
    containerd cron dbus dbus-1 default dhcp docker dpkg fonts gnupg grub
    initramfs-tools iproute2 iptables kernel ldap letsencrypt logrotate man-db
    misc mysql network nftables nginx opt pam perl php polkit-1 postfix
    postgresql private python3 redis security selinux skel ssh ssl sudo
    systemd terminfo ucf udev ufw vim xdg
    """.split()
)

# Accounts and groups that a stock Debian 12 system (with the usual desktop,
# server and container packages) already has. The service user must be new.
SYSTEM_ACCOUNTS = frozenset(
    """
    root daemon bin sys sync games man lp mail news uucp proxy www-data backup
    list irc gnats _gnats nobody nogroup systemd-network systemd-resolve
    systemd-timesync systemd-coredump systemd-journal systemd-oom messagebus
    sshd _apt apt polkitd avahi avahi-autoipd postfix postdrop ntp ntpsec
    _chrony chrony statd tss uuidd dnsmasq tcpdump usbmux rtkit colord pulse
    pulse-access saned geoclue lightdm gdm speech-dispatcher cups-pk-helper
    hplip kernoops whoopsie nm-openvpn nm-openconnect dhcpcd _rpc rpc rpcuser
    _flatpak flatpak fwupd-refresh sddm bind named Debian-exim Debian-snmp
    mysql postgres redis memcache nginx syslog ftp tftp smmsp
    sudo adm staff shadow disk docker tty kmem dialout fax voice cdrom floppy
    tape audio dip video plugdev netdev operator src utmp sasl scanner users
    input kvm render sgx crontab ssl-cert lpadmin bluetooth systemd-journal-remote
    wheel admin ssh _ssh nogroup lxd libvirt libvirt-qemu
    """.split()
)


def shown(value):
    """Show a bad value as repr, cut short so one line stays readable."""
    text = repr(value)
    return text if len(text) <= 80 else text[:72] + "...(cut)"


def check_project(value):
    """The project names a directory, a distribution and unix paths: keep it plain."""
    if not (isinstance(value, str) and re.fullmatch(PROJECT_REGEX, value)):
        return (
            "must be 3-32 characters of lower-case letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen"
        )
    if value in SYSTEM_DIRECTORY_NAMES:
        return (
            "must not be the name of a directory a Debian host already has in "
            "/etc or /var/lib (deploy creates /etc/PROJECT and /var/lib/PROJECT)"
        )
    return None


def check_package(value):
    """The import name must not hide a keyword, the standard library or a dependency."""
    if not (isinstance(value, str) and value.isidentifier() and value.isascii()):
        return "must be a Python identifier (it is project with '-' replaced by '_')"
    project = ANSWERS["project"]
    if isinstance(project, str) and value != project.replace("-", "_"):
        derived = project.replace("-", "_")
        return f"must be project with '-' replaced by '_' ({derived!r})"
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return "must not be a Python keyword; choose another project name"
    stdlib = set(getattr(sys, "stdlib_module_names", ()))
    if value in stdlib | set(sys.builtin_module_names):
        return "must not be a standard-library module; choose another project name"
    if value in DEPENDENCY_IMPORT_NAMES:
        return "must not be a dependency's import name; choose another project name"
    if value in RESERVED_PACKAGES:
        return "must not be a name the generated tree uses (tests, src, setup, ...)"
    return None


def check_text(value):
    """Free text is rendered into TOML, Markdown and Python: one line, printable."""
    if not isinstance(value, str):
        return "must be text"
    if len(value) > MAX_TEXT:
        return f"must be at most {MAX_TEXT} characters"
    if any(not character.isprintable() for character in value):
        return "must be one line of printable text (no newline, tab or control)"
    return None


def check_email(value):
    """The e-mail goes into pyproject.toml; it must at least look like one."""
    problem = check_text(value)
    if problem:
        return problem
    if not re.fullmatch(r"[^@\s<>\",;]+@[^@\s<>\",;]+\.[^@\s<>\",;]+", value):
        return "must look like an e-mail address (name@example.com)"
    return None


def check_domain(value):
    """The domain becomes nginx's server_name and certificate paths: a hostname only."""
    allowed = (
        "must be a lower-case hostname: dot-separated labels of 1-63 letters, "
        "digits and hyphens (no hyphen at either end), at most 253 characters, "
        "not an IP address"
    )
    if not isinstance(value, str) or len(value) > 253:
        return allowed
    labels = value.split(".")
    if not all(re.fullmatch(HOSTNAME_LABEL_REGEX, label) for label in labels):
        return allowed
    # An all-numeric last label would make it an IPv4 address (or look like one).
    if labels[-1].isdigit():
        return allowed
    return None


def as_port(value):
    """Ports come as int (defaults) or text (prompt, command line): read both."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(PORT_REGEX, value):
        return int(value)
    return None


def check_ports(answers):
    """Ports must be in range and clash neither with each other nor with nginx."""
    ranges = {"public_port": 1024, "internal_port": 1024, "ssh_port": 1}
    ports = {name: as_port(answers[name]) for name in ranges}
    problems = {}
    for name, low in ranges.items():
        others = [other for other in ranges if other != name]
        allowed = (
            f"must be an integer in {low}-65535 and differ from "
            f"{', '.join(others)}, 80 and 443"
        )
        port = ports[name]
        clash = port in (80, 443) or any(
            ports[other] is not None and ports[other] == port for other in others
        )
        if port is None or not low <= port <= 65535 or clash:
            problems[name] = allowed
    return problems


def check_boolean(value):
    """A switch picks a code path; a string like 'false' would be truthy there."""
    if not isinstance(value, bool):
        return "must be a boolean: true or false (yes/no, 1/0 on the command line)"
    return None


def check_service_user(value):
    """The service user must be a valid, NEW account: never root or a system one."""
    if not (isinstance(value, str) and re.fullmatch(POSIX_USER_REGEX, value)):
        return (
            "must be a POSIX user name: at most 32 of a-z, 0-9, '_' and '-', "
            "starting with a letter or '_'"
        )
    if value in SYSTEM_ACCOUNTS:
        return (
            "must not be root or another account or group a stock Debian system "
            "has (daemon, nobody, www-data, sudo, docker, ...); choose a new name"
        )
    return None


def check_firewall(value):
    """Only the backends the template ships can be chosen."""
    if value not in FIREWALLS:
        return f"must be one of {', '.join(FIREWALLS)}"
    return None


def check_database(value):
    """Only the data stores the template ships can be chosen."""
    if value not in DATABASES:
        return f"must be one of {', '.join(DATABASES)}"
    return None


def check_trusted_clients(value):
    """Each trusted client opens the internal port to it: real addresses only."""
    allowed = (
        "must be empty or comma-separated IPv4/IPv6 addresses or CIDRs with no "
        "host bits set, none of them 0.0.0.0/0, ::/0, 0.0.0.0, :: or multicast"
    )
    if not isinstance(value, str):
        return allowed
    if not value.strip():
        return None
    for entry in value.split(","):
        entry = entry.strip()
        # No zone ids ('fe80::1%eth0'): firewall rules cannot use them.
        if not entry or "%" in entry:
            return f"{allowed}; bad entry {entry!r}"
        try:
            # strict=True: '192.0.2.10/24' is refused rather than silently
            # turned into 192.0.2.0/24; the user writes the network instead.
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            hint = ""
            with contextlib.suppress(ValueError):
                hint = f" (did you mean {ipaddress.ip_network(entry, strict=False)}?)"
            return f"{allowed}; bad entry {entry!r}{hint}"
        if network.prefixlen == 0 or network.network_address.is_unspecified:
            return f"{allowed}; {entry!r} would admit anyone"
        if network.is_multicast:
            return f"{allowed}; {entry!r} is multicast"
    return None


def check_database_role(answers):
    """PostgreSQL's role, database and schema take the package's name; it
    reserves role names that start with pg_ for itself."""
    package = answers["project"].replace("-", "_") if isinstance(answers["project"], str) else ""
    if answers["database"] == "postgresql" and package.startswith("pg_"):
        return {
            "project": "must not start with 'pg-' with database=postgresql: the database "
            "role takes the package's name, and PostgreSQL reserves names that start with pg_"
        }
    return {}


def find_problems(answers):
    """Check every answer; return {variable: what is allowed} for the bad ones."""
    problems = {}
    # package and (by default) service_user are derived from project: when
    # project is bad, they repeat its mistake, and only project is reported.
    project = answers["project"]
    derived = {
        "package": project.replace("-", "_") if isinstance(project, str) else None,
        "service_user": project,
    }
    simple_checks = {
        "project": check_project,
        "package": check_package,
        "description": check_text,
        "author": check_text,
        "email": check_email,
        "domain": check_domain,
        "harden": check_boolean,
        "service_user": check_service_user,
        "firewall": check_firewall,
        "trusted_clients": check_trusted_clients,
        "anonymous_reads": check_boolean,
        "database": check_database,
    }
    for name, check in simple_checks.items():
        if "project" in problems and name in derived and answers[name] == derived[name]:
            continue
        problem = check(answers[name])
        if problem:
            problems[name] = problem
    problems.update(check_ports(answers))
    if "project" not in problems:
        problems.update(check_database_role(answers))
    return problems


def main():
    """Print one line per bad answer, in cookiecutter.json order, and fail if any."""
    problems = find_problems(ANSWERS)
    for name in ANSWERS:
        if name in problems:
            line = f"error: {name}={shown(ANSWERS[name])} {problems[name]}"
            print(line, file=sys.stderr)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
