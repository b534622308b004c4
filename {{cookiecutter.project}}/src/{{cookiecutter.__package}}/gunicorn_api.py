"""gunicorn settings of the public API: `gunicorn -c python:{{ cookiecutter.__package }}.gunicorn_api`.

Every value comes from config.py, so the environment variables documented in
README.md are the one place to change them.
"""

# Module-level names are read as gunicorn settings, and "config" is one: keep it private.
from . import config as _config
from .bindcheck import BindError, check_bind

_config.load_dotenv()
_settings = _config.load_or_exit()
try:
    # nginx is the public listener; gunicorn stays on loopback.
    _host = check_bind("PUBLIC_BIND", _settings["PUBLIC_BIND"])
except BindError as exc:
    raise SystemExit(f"{_config.PREFIX.lower()}-api: {exc}") from None

wsgi_app = "{{ cookiecutter.__package }}.api:create_app()"
bind = [_config.join_host_port(_host, _settings["PUBLIC_PORT"])]
workers = _settings["WORKERS"]
worker_class = "sync"
proc_name = "{{ cookiecutter.project }}-api"
# Heartbeat files in RAM: no disk writes, and it works under ProtectSystem=strict.
worker_tmp_dir = "/dev/shm"  # noqa: S108 - a fixed RAM directory, not a temp file name
# No runtime control socket: nothing to guard in $HOME or elsewhere.
control_socket_disable = True
# Only the local proxy may tell us the client's scheme and address.
forwarded_allow_ips = "127.0.0.1,::1"
loglevel = _settings["LOG_LEVEL"].lower()
errorlog = "-"
