"""Mutual TLS between the API hosts and the internal service (several-hosts mode).

Both ends trust the project's own CA alone (deploy/pki.sh makes it): the
internal service asks every client for a certificate it signed, and the API
checks that the server's certificate names the address it dials. TLS is on
when INTERNAL_TLS_CA is set. Only TLS 1.3: this project runs both ends.
"""

import os
import re
import ssl

from .config import PREFIX, SettingsError

CA, CERT, KEY = "INTERNAL_TLS_CA", "INTERNAL_TLS_CERT", "INTERNAL_TLS_KEY"


def enabled(settings):
    return bool(settings[CA])


def server_context(settings):
    """The internal service's context, or None when TLS is off."""
    context = _context(settings, ssl.PROTOCOL_TLS_SERVER)
    if context is not None:
        # No session tickets: nothing is resumed, and the client's liveness
        # probe then never sees a record that carries no data.
        context.num_tickets = 0
        context.options |= ssl.OP_NO_TICKET
    return context


def client_context(settings):
    """The API's context, or None when TLS is off."""
    return _context(settings, ssl.PROTOCOL_TLS_CLIENT)


def _name(key):
    return f"{PREFIX}_{key}"


def _read(settings, key, marker, what):
    """Check a file is readable and holds what it should; SettingsError names the variable."""
    path = settings[key]
    try:
        with open(path, "rb") as file:
            text = file.read()
    except OSError as exc:
        raise SettingsError(f"{_name(key)}={path!r} cannot be read: {exc.strerror}") from None
    if marker not in text:
        raise SettingsError(f"{_name(key)}={path!r} holds no PEM {what}")
    return path, text


def _context(settings, protocol):
    if not settings[CA]:
        for key in (CERT, KEY):
            if settings[key]:
                # Half a configuration would silently mean plain TCP.
                raise SettingsError(
                    f"{_name(key)} is set but {_name(CA)} is empty: set all three to use TLS"
                )
        return None
    ca, cert, key = _checked_files(settings)
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    _load(context, ca, cert, key)
    if protocol == ssl.PROTOCOL_TLS_CLIENT:
        context.check_hostname = True
    return context


def _checked_files(settings):
    """The three paths, once each file is readable, holds what it should and the key is private."""
    for key in (CERT, KEY):
        if not settings[key]:
            raise SettingsError(
                f"{_name(key)} is missing: {_name(CA)} is set, so TLS needs this side's"
                " certificate and key (deploy/pki.sh makes them)"
            )
    ca, _ = _read(settings, CA, b"-----BEGIN CERTIFICATE-----", "certificate")
    cert, _ = _read(settings, CERT, b"-----BEGIN CERTIFICATE-----", "certificate")
    key, key_text = _read(settings, KEY, b"PRIVATE KEY-----", "private key")
    if b"ENCRYPTED" in key_text:
        raise SettingsError(
            f"{_name(KEY)}={key!r} is encrypted: the service starts unattended and"
            " cannot ask for a passphrase; protect it with its file mode instead"
        )
    mode = os.stat(key).st_mode & 0o777
    if mode & 0o007:
        raise SettingsError(
            f"{_name(KEY)}={key!r} is open to every user (mode {mode:04o}): make it 0640 or 0600"
        )
    return ca, cert, key


def _load(context, ca, cert, key):
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise SettingsError(f"{_name(CA)}={ca!r} cannot be used: {error_text(exc)}") from None
    if not context.get_ca_certs():
        # A server or client certificate given by mistake would trust nothing useful.
        raise SettingsError(f"{_name(CA)}={ca!r} holds no CA certificate (CA:TRUE)")
    try:
        # The callback keeps OpenSSL from prompting on a terminal for a passphrase.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        raise SettingsError(
            f"{_name(CERT)}={cert!r} and {_name(KEY)}={key!r} cannot be used together:"
            f" {error_text(exc)}"
        ) from None


def error_text(exc):
    """A failed handshake or file in a few words, without _ssl.c's file and line."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        text = exc.reason.lower().replace("_", " ")
        verify = getattr(exc, "verify_message", None)
        return f"{text}: {verify}" if verify else text
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text) or type(exc).__name__


def common_name(peer_certificate):
    """CN=... of the peer's certificate (getpeercert()), for log lines."""
    for entry in (peer_certificate or {}).get("subject", ()):
        for key, value in entry:
            if key == "commonName":
                return f"CN={value}"
    return "without a CN"
