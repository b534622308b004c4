"""The bind check: a server of this project never listens on a wildcard address.

Loopback is always allowed. Any other single address is allowed only in the
several-hosts mode (TRUSTED_CLIENTS set), where the firewall and mutual TLS
admit just the trusted clients.
"""

import ipaddress

from .config import PREFIX


class BindError(ValueError):
    """The configured listen address is not allowed."""


def check_bind(setting, host, several_hosts=False):
    """Return the address to bind, or raise BindError with one line naming the setting."""
    name = f"{PREFIX}_{setting}"
    literal = host.strip().removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        if literal in ("", "*", "0"):
            raise BindError(
                f"{name}={host!r} is a wildcard: it would listen on every interface; use 127.0.0.1"
            ) from None
        raise BindError(
            f"{name}={host!r} is not an IP address: use 127.0.0.1 or one interface address"
        ) from None
    if address.is_unspecified:
        raise BindError(
            f"{name}={host!r} is a wildcard: it would listen on every interface; use 127.0.0.1"
        )
    if address.is_loopback:
        return str(address)
    if not several_hosts:
        raise BindError(
            f"{name}={host!r} is not a loopback address: use 127.0.0.1, or set"
            f" {PREFIX}_TRUSTED_CLIENTS to serve other hosts"
        )
    if address.is_multicast or address.is_reserved:
        raise BindError(f"{name}={host!r} is not a unicast interface address")
    return str(address)
