"""The security headers as nginx add_header lines, for the errors nginx writes itself.

nginx answers some requests without the app (a 502 when gunicorn is down, a
413, a 429 from its rate limit, a request it cannot parse). Those answers
must carry the same protections as the app's JSON errors, so this prints
the list harden.py sends on a JSON answer, the one list both use:

    python -m {{ cookiecutter.__package }}.api.nginx_headers https
    python -m {{ cookiecutter.__package }}.api.nginx_headers http

deploy/install.sh writes the two into /etc/nginx/snippets/, which the site's
error locations include: https for port 443 (HSTS among them), http for the
redirecting port 80, where browsers ignore HSTS.
"""

import sys

from . import harden


def lines(https):
    """add_header lines for a JSON answer over https (or http): always, on every status."""
    out = []
    for name, value in harden.json_headers(https):
        # nginx would read $ as a variable and " as the end of the string.
        if "$" in value or '"' in value or "\\" in value:
            raise ValueError(f"{name}: {value!r} cannot be written as an nginx string")
        out.append(f'add_header {name} "{value}" always;')
    return out


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if args not in (["https"], ["http"]):
        sys.exit("usage: python -m {{ cookiecutter.__package }}.api.nginx_headers https|http")
    header = "# Written by deploy/install.sh from api/harden.py; do not edit, run it again."
    print("\n".join([header, *lines(args[0] == "https")]))


if __name__ == "__main__":
    main()
