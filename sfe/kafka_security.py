"""Security of Kafka client connections: the one place settings become client properties.

A confluent-kafka client (``Producer``, ``Consumer``, ``AdminClient``) starts from
:func:`kafka_client_config` and adds its own properties::

    Producer({**kafka_client_config(settings), "enable.idempotence": True})

The result holds ``bootstrap.servers`` and ``security.protocol`` and, as the protocol
needs them, the SASL mechanism and credentials (``SFE_KAFKA_SASL_*``) and the CA bundle
the brokers' certificates are checked against (``SFE_KAFKA_SSL_CA_LOCATION``; the broker's
host name is verified too) and, for mutual TLS, the client's certificate and key
(``SFE_KAFKA_SSL_CERTIFICATE_LOCATION``, ``SFE_KAFKA_SSL_KEY_LOCATION``,
``SFE_KAFKA_SSL_KEY_PASSWORD``). The Faust worker takes the same settings through
:func:`faust_broker_credentials`. A setting that the protocol would silently ignore
(credentials with PLAINTEXT, a CA bundle without TLS) or a missing one (SASL without a
user name) raises :class:`~sfe.settings.SettingsError` naming the variable.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from sfe.settings import Settings, SettingsError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

#: A confluent-kafka client configuration (the type its constructors take).
KafkaConfig = dict[str, str | int | float | bool]

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


def kafka_client_config(settings: Settings) -> KafkaConfig:
    """The confluent-kafka (librdkafka) properties for the brokers of ``settings``."""
    protocol = settings.kafka_security_protocol
    config: KafkaConfig = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": protocol,
    }
    if protocol in SASL_PROTOCOLS:
        username, password = _sasl_credentials(settings)
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = username
        config["sasl.password"] = password
    elif settings.kafka_sasl_username or settings.kafka_sasl_password:
        raise SettingsError(
            "invalid setting SFE_KAFKA_SASL_USERNAME/SFE_KAFKA_SASL_PASSWORD: set, but "
            f"SFE_KAFKA_SECURITY_PROTOCOL={protocol} sends no credentials "
            "(use SASL_SSL or SASL_PLAINTEXT)"
        )
    if protocol in TLS_PROTOCOLS:
        config["ssl.endpoint.identification.algorithm"] = "https"
        ca = _ca_location(settings)
        if ca is not None:
            config["ssl.ca.location"] = ca
        client = _client_certificate(settings)
        if client is not None:
            config["ssl.certificate.location"] = client[0]
            config["ssl.key.location"] = client[1]
            if client[2] is not None:
                config["ssl.key.password"] = client[2]
    else:
        for variable, value in (
            ("SFE_KAFKA_SSL_CA_LOCATION", settings.kafka_ssl_ca_location),
            ("SFE_KAFKA_SSL_CERTIFICATE_LOCATION", settings.kafka_ssl_certificate_location),
            ("SFE_KAFKA_SSL_KEY_LOCATION", settings.kafka_ssl_key_location),
        ):
            if value is not None:
                raise SettingsError(
                    f"invalid setting {variable}: set, but SFE_KAFKA_SECURITY_PROTOCOL="
                    f"{protocol} uses no TLS (use SSL or SASL_SSL)"
                )
    return config


#: The security properties of this process's clients (:func:`use_for_process`).
_process_security: KafkaConfig = {}


def use_for_process(settings: Settings) -> KafkaConfig:
    """Make ``settings``' security the one :func:`client_config` adds, for this process.

    Called once at start by the command line (``sfe.cli.settings_from``), which turns a
    :class:`~sfe.settings.SettingsError` into a message naming the variable. Returns the
    properties (without ``bootstrap.servers``), e.g. to hand to a child process.
    """
    global _process_security
    config = kafka_client_config(settings)
    _process_security = {k: v for k, v in config.items() if k != "bootstrap.servers"}
    return dict(_process_security)


def use_properties(properties: KafkaConfig) -> None:
    """Adopt security properties another process computed (:func:`use_for_process`)."""
    global _process_security
    _process_security = dict(properties)


def client_config(bootstrap: str) -> KafkaConfig:
    """``bootstrap.servers`` and this process's security properties, for a new client.

    Every client of the pipeline starts from this (``Producer({**client_config(b),
    "enable.idempotence": True})``); PLAINTEXT until :func:`use_for_process` says more.
    """
    return {**_process_security, "bootstrap.servers": bootstrap}


def process_properties() -> KafkaConfig:
    """The security properties :func:`client_config` adds in this process."""
    return dict(_process_security)


def faust_broker_credentials(settings: Settings) -> CredentialsT | None:
    """The same security for a Faust app (``faust.App(broker_credentials=...)``).

    ``None`` for PLAINTEXT. The broker URL stays ``kafka://host:port``; Faust picks
    the protocol from the credentials' type and whether they carry an SSL context.
    """
    import faust

    kafka_client_config(settings)  # the same checks and errors
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings) if protocol in TLS_PROTOCOLS else None
    if protocol in SASL_PROTOCOLS:
        username, password = _sasl_credentials(settings)
        return faust.SASLCredentials(
            username=username,
            password=password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context trusting ``SFE_KAFKA_SSL_CA_LOCATION`` (else the system's CAs).

    It presents the client certificate when one is configured (mutual TLS).
    """
    context = ssl.create_default_context(cafile=_ca_location(settings))
    client = _client_certificate(settings)
    if client is not None:
        certificate, key, password = client
        context.load_cert_chain(certificate, key, password)
    return context


def _client_certificate(settings: Settings) -> tuple[str, str, str | None] | None:
    """Certificate file, key file and key password of mutual TLS; None when not configured."""
    certificate, key = settings.kafka_ssl_certificate_location, settings.kafka_ssl_key_location
    if certificate is None and key is None:
        if settings.kafka_ssl_key_password is not None:
            raise SettingsError(
                "invalid setting SFE_KAFKA_SSL_KEY_PASSWORD: set, but no SFE_KAFKA_SSL_KEY_LOCATION"
            )
        return None
    for variable, path in (
        ("SFE_KAFKA_SSL_CERTIFICATE_LOCATION", certificate),
        ("SFE_KAFKA_SSL_KEY_LOCATION", key),
    ):
        if path is None:
            raise SettingsError(
                f"invalid setting {variable}: required with the client's "
                + ("key" if variable.endswith("CERTIFICATE_LOCATION") else "certificate")
            )
        if not path.is_file():
            raise SettingsError(f"invalid setting {variable}: no file at {path}")
    assert certificate is not None and key is not None
    password = settings.kafka_ssl_key_password
    return str(certificate), str(key), None if password is None else password.get_secret_value()


def _sasl_credentials(settings: Settings) -> tuple[str, str]:
    protocol = settings.kafka_security_protocol
    if not settings.kafka_sasl_username:
        raise SettingsError(
            f"invalid setting SFE_KAFKA_SASL_USERNAME: required with "
            f"SFE_KAFKA_SECURITY_PROTOCOL={protocol}"
        )
    password = settings.kafka_sasl_password
    if password is None or not password.get_secret_value():
        raise SettingsError(
            f"invalid setting SFE_KAFKA_SASL_PASSWORD: required (or SFE_KAFKA_SASL_PASSWORD_FILE) "
            f"with SFE_KAFKA_SECURITY_PROTOCOL={protocol}"
        )
    return settings.kafka_sasl_username, password.get_secret_value()


def _ca_location(settings: Settings) -> str | None:
    ca = settings.kafka_ssl_ca_location
    if ca is None:
        return None
    if not ca.is_file():
        raise SettingsError(f"invalid setting SFE_KAFKA_SSL_CA_LOCATION: no file at {ca}")
    return str(ca)
