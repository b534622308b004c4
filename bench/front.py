"""nginx in front (--front nginx): each group behind its own copy of the generated site file.

One nginx (Debian's, with headers-more), configured as Debian 12's nginx.conf
configures it, includes one copy of deploy/nginx/PROJECT.conf per group. A
copy differs from the generated file only in what a benchmark must change:

- its listen addresses: free ports on 127.0.0.1 (no [::] lines);
- a self-signed certificate made here with openssl;
- the upstream's `server 127.0.0.1:PORT;` line: the group's gunicorn;
- the error pages' header snippets, printed by the project's own code as
  deploy/install.sh does, and the access log: files in the work directory;
- its http-level names (zones, maps, upstream), tagged to be unique;
- the catch-all default_server (with its ssl_reject_handshake) is dropped. It
  closes requests for any name but the domain, and wrk sends the URL's host
  (127.0.0.1) as Host and SNI. Without it, the site's server is its port's
  only one, so it takes those requests and serves them as it serves the
  domain: the same TLS settings, headers, buffering and upstream keep-alive;
- the API's rate limit (10 r/s per address, burst 20) is raised to a million
  of each, so that wrk's flood is never refused with a 429. The zone is still
  looked up on every request, so what that costs stays in the figures.

Everything else is as generated.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HEADERS_MORE = Path("/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so")

NGINX_CONF = """\
load_module {headers_more};
# Debian 12's nginx.conf, in the work directory, and in the foreground.
user www-data;
worker_processes auto;
daemon off;
master_process on;
pid {work}/nginx.pid;
error_log {work}/error.log;

events {{
    worker_connections 768;
}}

http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {work}/access.log;
    gzip on;
    client_body_temp_path {work}/temp/body;
    proxy_temp_path {work}/temp/proxy;
    fastcgi_temp_path {work}/temp/fastcgi;
    uwsgi_temp_path {work}/temp/uwsgi;
    scgi_temp_path {work}/temp/scgi;
{includes}
}}
"""


def substitute(text, old, new, count):
    """Replace old, which must occur exactly count times: a changed site file is noticed."""
    found = text.count(old)
    if found != count:
        raise SystemExit(f"bench: the site file has {found} of {old!r}, the bench expects {count}")
    return text.replace(old, new)


def without_catch_all(text):
    """The site file less its default_server block (the only one with ssl_reject_handshake)."""
    start = text.rfind("server {", 0, text.index("listen 80 default_server;"))
    depth, end = 0, start
    for end in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0 and text[end] == "}":
            break
    text = text[:start] + text[end + 1 :]
    if " default_server;" in text or "ssl_reject_handshake" in text:
        raise SystemExit("bench: the site file's catch-all server was not where expected")
    return text


def site_copy(site, answers, work, tag, ports):
    """The bench's copy of the site file for one group: see the module's docstring."""
    package, project, domain = answers["package"], answers["project"], answers["domain"]
    text = without_catch_all(site)
    text = substitute(text, "listen 80;", f"listen 127.0.0.1:{ports['http']};", 1)
    https = f"listen 127.0.0.1:{ports['https']} ssl http2;"
    text = substitute(text, "listen 443 ssl http2;", https, 1)
    text = substitute(text, "listen [::]:80;", "", 1)
    text = substitute(text, "listen [::]:443 ssl http2;", "", 1)
    live = f"/etc/letsencrypt/live/{domain}"
    text = substitute(text, f"{live}/fullchain.pem;", f"{work}/cert.pem;", 1)
    text = substitute(text, f"{live}/privkey.pem;", f"{work}/key.pem;", 1)
    upstream = f"server 127.0.0.1:{answers['public_port']};"
    text = substitute(text, upstream, f"server 127.0.0.1:{ports['upstream']};", 1)
    log = f"/var/log/nginx/{project}.access.log"
    text = substitute(text, log, f"{work}/access-{tag}.log", 2)
    for scheme in ("https", "http"):
        snippet = f"include snippets/{project}-headers-{scheme}.conf;"
        text = substitute(text, snippet, f"include {work}/headers-{scheme}.conf;", 1)
    text = substitute(text, "rate=10r/s;", "rate=1000000r/s;", 1)
    text = substitute(text, "burst=20 nodelay;", "burst=1000000 nodelay;", 1)
    return text.replace(f"{package}_", f"{package}_{tag}_")


def make_certificate(work, domain):
    """A self-signed ECDSA certificate for the domain and 127.0.0.1, as cert.pem and key.pem."""
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(work / "key.pem"),
               "-out", str(work / "cert.pem"), "-days", "2", "-subj", f"/CN={domain}",
               "-addext", f"subjectAltName=DNS:{domain},IP:127.0.0.1"]  # fmt: skip
    subprocess.run(command, capture_output=True, check=True, timeout=60)
    return work / "cert.pem"


def write_header_snippets(work, env, package):
    """The two snippets of the error pages' headers, from the project's own code."""
    for scheme in ("https", "http"):
        command = [sys.executable, "-m", f"{package}.api.nginx_headers", scheme]
        printed = subprocess.run(
            command, env=env, capture_output=True, text=True, check=True, timeout=60
        ).stdout
        (work / f"headers-{scheme}.conf").write_text(printed)


def answers_of(template):
    """The template's default answers that the site file was rendered with."""
    raw = json.loads((Path(template) / "cookiecutter.json").read_text())
    return {
        "project": raw["project"],
        "package": raw["project"].replace("-", "_"),
        "domain": raw["domain"],
        "public_port": raw["public_port"],
    }


class Front:
    """The nginx work directory (in /tmp, mode 0711: the www-data workers must
    reach their temp dirs) and what was made in it; removed by close()."""

    def __init__(self, template, project):
        self.answers = answers_of(template)
        name = self.answers["project"]
        self.site = (project / "deploy" / "nginx" / f"{name}.conf").read_text()
        self.work = Path(tempfile.mkdtemp(prefix="bastion-bench-nginx-", dir="/tmp"))
        os.chmod(self.work, 0o711)
        (self.work / "temp").mkdir()
        self.cert = None

    def configure(self, upstreams, env, free_port):
        """A site copy per group (group -> its gunicorn port) and nginx.conf: the https URLs."""
        self.cert = make_certificate(self.work, self.answers["domain"])
        write_header_snippets(self.work, env, self.answers["package"])
        urls, includes = {}, []
        for group, upstream in upstreams.items():
            tag = group.replace("-", "_")
            ports = {"http": free_port(), "https": free_port(), "upstream": upstream}
            text = site_copy(self.site, self.answers, self.work, tag, ports)
            (self.work / f"site-{tag}.conf").write_text(text)
            includes.append(f"    include {self.work}/site-{tag}.conf;")
            urls[group] = f"https://127.0.0.1:{ports['https']}"
        conf = NGINX_CONF.format(
            headers_more=HEADERS_MORE, work=self.work, includes="\n".join(includes)
        )
        (self.work / "nginx.conf").write_text(conf)
        return urls

    def start(self, processes):
        """nginx -t, then nginx as the group "nginx" (stopped with SIGQUIT)."""
        command = ["nginx", "-e", str(self.work / "error.log"), "-c", str(self.work / "nginx.conf")]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=60)
        if checked.returncode != 0:
            raise SystemExit(f"bench: nginx -t failed:\n{checked.stderr}")
        processes.start("nginx", command, None, "nginx", stop_signal=signal.SIGQUIT)

    def close(self):
        shutil.rmtree(self.work, ignore_errors=True)
