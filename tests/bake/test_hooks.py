"""The pre-generation hook refuses every bad answer, clearly, and leaves nothing.

Each case runs the real cookiecutter CLI in a subprocess, the way a user
does: `python -m cookiecutter --no-input -o TMP TEMPLATE key=value`.
"""

import pytest

from support.baking import default_answers

# (variable the error line must name, key=value answers that are bad for it)
BAD_ANSWERS = [
    # project: ^[a-z][a-z0-9-]{1,30}[a-z0-9]$
    ("project", ["project=MyService"]),
    ("project", ["project=my service"]),
    ("project", ["project=1service"]),
    ("project", ["project=myservice-"]),
    ("project", ["project=my_service"]),
    ("project", ["project=ab"]),
    ("project", ["project=" + "a" * 33]),
    ("project", ["project=myservice\n"]),
    ("project", ["project=../escape"]),
    # a project named like /etc/ssh or /etc/systemd would take that over
    ("project", ["project=ssh", "service_user=svc"]),
    ("project", ["project=systemd", "service_user=svc"]),
    # package: keyword, standard library, a dependency, the tree's own names
    ("package", ["project=class"]),
    ("package", ["project=async"]),
    ("package", ["project=json"]),
    ("package", ["project=email"]),
    ("package", ["project=typing"]),
    ("package", ["project=flask"]),
    ("package", ["project=gunicorn"]),
    ("package", ["project=werkzeug"]),
    ("package", ["project=jinja2"]),
    ("package", ["project=click"]),
    ("package", ["project=flask-talisman"]),
    ("package", ["project=flask-openapi3"]),
    ("package", ["project=pydantic"]),
    ("package", ["project=pydantic-core"]),
    ("package", ["project=dotenv"]),
    ("package", ["project=psutil"]),
    ("package", ["project=honcho"]),
    ("package", ["project=pytest"]),
    ("package", ["project=ruff"]),
    ("package", ["project=urllib3"]),
    ("package", ["project=cookiecutter"]),
    ("package", ["project=tests"]),
    ("package", ["__package=other"]),
    # public_port / internal_port: 1024-65535, distinct, not ssh, 80 or 443
    ("public_port", ["public_port=80"]),
    ("public_port", ["public_port=443"]),
    ("public_port", ["public_port=1023"]),
    ("public_port", ["public_port=65536"]),
    ("public_port", ["public_port=0"]),
    ("public_port", ["public_port=-8000"]),
    ("public_port", ["public_port=http"]),
    ("public_port", ["public_port=8000.0"]),
    ("public_port", ["public_port=08000"]),
    ("public_port", ["public_port= 8000"]),
    ("public_port", ["public_port="]),
    ("public_port", ["public_port=2222", "ssh_port=2222"]),
    ("internal_port", ["internal_port=8000"]),
    ("internal_port", ["internal_port=22"]),
    ("internal_port", ["internal_port=70000"]),
    ("internal_port", ["internal_port=x"]),
    ("internal_port", ["internal_port=9000", "ssh_port=9000"]),
    # ssh_port: 1-65535, not 80, 443 or an application port
    ("ssh_port", ["ssh_port=0"]),
    ("ssh_port", ["ssh_port=65536"]),
    ("ssh_port", ["ssh_port=80"]),
    ("ssh_port", ["ssh_port=443"]),
    ("ssh_port", ["ssh_port=8001"]),
    ("ssh_port", ["ssh_port=ssh"]),
    # service_user: POSIX name, new account
    ("service_user", ["service_user=root"]),
    ("service_user", ["service_user=daemon"]),
    ("service_user", ["service_user=bin"]),
    ("service_user", ["service_user=nobody"]),
    ("service_user", ["service_user=www-data"]),
    ("service_user", ["service_user=sshd"]),
    ("service_user", ["service_user=systemd-network"]),
    ("service_user", ["service_user=_apt"]),
    ("service_user", ["service_user=sudo"]),
    ("service_user", ["service_user=adm"]),
    ("service_user", ["service_user=staff"]),
    ("service_user", ["service_user=shadow"]),
    ("service_user", ["service_user=disk"]),
    ("service_user", ["service_user=docker"]),
    ("service_user", ["project=nobody"]),
    ("service_user", ["service_user=Svc"]),
    ("service_user", ["service_user=1svc"]),
    ("service_user", ["service_user=svc user"]),
    ("service_user", ["service_user=svc$"]),
    ("service_user", ["service_user=svc.user"]),
    ("service_user", ["service_user="]),
    ("service_user", ["service_user=" + "s" * 33]),
    # domain: a lower-case hostname, not an IP address
    ("domain", ["domain=Example.com"]),
    ("domain", ["domain=-example.com"]),
    ("domain", ["domain=example-.com"]),
    ("domain", ["domain=exa_mple.com"]),
    ("domain", ["domain=example..com"]),
    ("domain", ["domain=example.com."]),
    ("domain", ["domain=" + "a" * 64 + ".com"]),
    ("domain", ["domain=" + ".".join(["a" * 62] * 4) + ".com"]),
    ("domain", ["domain=192.0.2.1"]),
    ("domain", ["domain=2001:db8::1"]),
    ("domain", ["domain=exämple.com"]),
    ("domain", ["domain="]),
    ("domain", ["domain=example.com; rm -rf /"]),
    # trusted_clients: addresses or CIDRs, never everyone
    ("trusted_clients", ["trusted_clients=0.0.0.0/0"]),
    ("trusted_clients", ["trusted_clients=::/0"]),
    ("trusted_clients", ["trusted_clients=0.0.0.0"]),
    ("trusted_clients", ["trusted_clients=::"]),
    ("trusted_clients", ["trusted_clients=224.0.0.1"]),
    ("trusted_clients", ["trusted_clients=ff02::1"]),
    ("trusted_clients", ["trusted_clients=192.0.2.10, 0.0.0.0/0"]),
    ("trusted_clients", ["trusted_clients=example.com"]),
    ("trusted_clients", ["trusted_clients=192.0.2.300"]),
    ("trusted_clients", ["trusted_clients=192.0.2.0/33"]),
    ("trusted_clients", ["trusted_clients=192.0.2.10/24"]),
    ("trusted_clients", ["trusted_clients=192.0.2.10,,192.0.2.11"]),
    ("trusted_clients", ["trusted_clients=192.0.2.10;192.0.2.11"]),
    ("trusted_clients", ["trusted_clients=fe80::1%eth0"]),
    # free text must stay one printable line
    ("description", ["description=two\nlines"]),
    ("author", ["author=tab\there"]),
    ("email", ["email=not-an-address"]),
]


def case_id(case):
    """A readable test id: the variable and the answers."""
    variable, answers = case
    return f"{variable}:{'|'.join(answers)!r}"


@pytest.mark.parametrize(
    ("variable", "answers"), BAD_ANSWERS, ids=[case_id(c) for c in BAD_ANSWERS]
)
def test_bad_answer_is_refused_with_one_line_naming_it(run_cookiecutter, variable, answers):
    result = run_cookiecutter(*answers)
    assert result.returncode != 0, result
    lines = result.error_lines(variable)
    assert len(lines) == 1, result
    # The line shows the value and says what is allowed.
    assert " must " in lines[0], result
    assert result.left_behind() == [], result


def test_bad_answer_line_shows_value_and_rule(run_cookiecutter):
    result = run_cookiecutter("public_port=80")
    assert result.returncode != 0, result
    expected = (
        "error: public_port='80' must be an integer in 1024-65535 and differ "
        "from internal_port, ssh_port, 80 and 443"
    )
    assert result.error_lines("public_port") == [expected], result


def test_all_bad_answers_are_reported_at_once(run_cookiecutter):
    result = run_cookiecutter(
        "project=Bad Name",
        "domain=-bad-",
        "public_port=80",
        "internal_port=abc",
        "ssh_port=443",
        "service_user=root",
        "trusted_clients=0.0.0.0/0",
        "email=nope",
    )
    assert result.returncode != 0, result
    for variable in (
        "project",
        "domain",
        "public_port",
        "internal_port",
        "ssh_port",
        "service_user",
        "trusted_clients",
        "email",
    ):
        assert len(result.error_lines(variable)) == 1, result
    # one mistake, one line: the package derived from a bad project is not
    # reported a second time
    assert result.error_lines("package") == [], result
    assert result.left_behind() == [], result


def test_a_bad_project_is_not_reported_again_for_what_derives_from_it(
    run_cookiecutter,
):
    # package and service_user default to the project name: one mistake, one line
    result = run_cookiecutter("project=Bad Name")
    assert result.returncode != 0, result
    assert len(result.error_lines("project")) == 1, result
    assert result.error_lines("package") == [], result
    assert result.error_lines("service_user") == [], result
    assert result.left_behind() == [], result


# cookiecutter converts booleans and checks choices itself before any hook
# runs, so on the command line these never reach the hook ...
@pytest.mark.parametrize(
    ("variable", "answer"),
    [
        ("harden", "harden=maybe"),
        ("anonymous_reads", "anonymous_reads=maybe"),
        ("firewall", "firewall=pf"),
        ("database", "database=mysql"),
    ],
)
def test_bad_boolean_or_choice_on_command_line_is_refused(run_cookiecutter, variable, answer):
    result = run_cookiecutter(answer)
    assert result.returncode != 0, result
    assert any(variable in line for line in result.stderr.splitlines()), result
    assert result.left_behind() == [], result


# ... but a replay file (or the Python API) hands them over untouched: the hook
# must refuse them too.
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("harden", "false"),
        ("harden", "true"),
        ("harden", 1),
        ("harden", None),
        ("anonymous_reads", "false"),
        ("anonymous_reads", "true"),
        ("anonymous_reads", "yes"),
        ("anonymous_reads", 0),
        ("anonymous_reads", None),
        ("anonymous_reads", [True]),
        ("firewall", "pf"),
        ("firewall", "NFTABLES"),
        ("firewall", ["nftables"]),
        ("database", "mysql"),
        ("database", "PostgreSQL"),
        ("public_port", True),
        ("public_port", 8000.5),
        ("trusted_clients", ["192.0.2.10"]),
        ("description", 42),
    ],
)
def test_bad_value_from_replay_file_is_refused_by_the_hook(run_cookiecutter, variable, value):
    result = run_cookiecutter(replay=default_answers(**{variable: value}))
    assert result.returncode != 0, result
    lines = result.error_lines(variable)
    assert len(lines) == 1, result
    # It shows the value as given (a string "false" is not the boolean false).
    assert lines[0].startswith(f"error: {variable}={value!r} must "), result
    assert result.left_behind() == [], result


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_anonymous_reads_from_a_replay_file_is_accepted(run_cookiecutter, value):
    result = run_cookiecutter(replay=default_answers(anonymous_reads=value))
    assert result.returncode == 0, result
    assert result.left_behind() == ["myservice"], result


def test_unusual_but_valid_answers_are_accepted(run_cookiecutter):
    result = run_cookiecutter(
        "project=my-svc2",
        "domain=api.example.org",
        "public_port=9000",
        "internal_port=9001",
        "ssh_port=2222",
        "service_user=_svc-2",
        "trusted_clients= 192.0.2.10 , 2001:db8::/64 ,198.51.100.0/24 ",
        "harden=no",
        "firewall=iptables",
    )
    assert result.returncode == 0, result
    assert result.left_behind() == ["my-svc2"], result
    assert (result.output_dir / "my-svc2" / "src" / "my_svc2").is_dir()


# The payload has no '/' so that, as a project name, it stays one directory
# (cookiecutter removes only the leaf of the project directory on failure).
MARKER_VARIABLE = "BASTION_INJECTION_MARKER"
PAYLOAD = f"__import__('os').system('touch \"${MARKER_VARIABLE}\"')"


def injections():
    """Values built to break out of a Python string literal, each running PAYLOAD."""
    code = PAYLOAD
    return [
        f"'''+{code}+'''",
        f'"""+{code}+"""',
        f"'+{code}+'",
        f'"+{code}+"',
        f"\\'+{code}#",
        f'\\\\"+{code}#',
        f"{{{{ {code} }}}}",
        f"{{% if 1 %}}{code}{{% endif %}}",
        f"é中😀\u2028{code}",
        f"x\n{code}\n",
    ]


def test_injected_code_in_answers_is_never_executed(run_cookiecutter, tmp_path):
    marker = tmp_path / "MARKER"
    env = {MARKER_VARIABLE: str(marker)}
    # From the command line, into fields the hook refuses and fields it accepts
    # (cookiecutter renders command-line values as Jinja itself, so the
    # Jinja-looking payloads are wrapped in {% raw %} to arrive as text).
    for value in injections():
        raw = "{% raw %}" + value + "{% endraw %}"
        result = run_cookiecutter(f"project={raw}", f"domain={raw}", f"description={raw}", env=env)
        assert result.returncode != 0, result
        assert len(result.error_lines("project")) == 1, result
        assert result.left_behind() == [], result
        assert not marker.exists(), f"code ran for {value!r}"


def test_injected_code_reaches_the_hook_as_exact_data(run_cookiecutter, tmp_path):
    marker = tmp_path / "MARKER"
    env = {MARKER_VARIABLE: str(marker)}
    # A replay file hands the values to the hook byte for byte; the hook's
    # error line (repr) must show exactly the value that was given.
    for value in injections():
        answers = default_answers(project=value, domain=value)
        answers["description"] = value
        answers["author"] = value
        result = run_cookiecutter(replay=answers, env=env)
        assert result.returncode != 0, result
        lines = result.error_lines("project")
        assert len(lines) == 1, result
        shown = repr(value)
        if len(shown) <= 80:
            assert lines[0].startswith(f"error: project={shown} must "), result
        else:
            assert lines[0].startswith(f"error: project={shown[:72]}...(cut) "), result
        assert len(result.error_lines("domain")) == 1, result
        assert result.left_behind() == [], result
        assert not marker.exists(), f"code ran for {value!r}"


def test_payload_would_create_the_marker_if_it_ran(tmp_path, monkeypatch):
    """Guard for the two tests above: the payload really does create the marker."""
    marker = tmp_path / "MARKER"
    monkeypatch.setenv(MARKER_VARIABLE, str(marker))
    eval(PAYLOAD)
    assert marker.exists()
