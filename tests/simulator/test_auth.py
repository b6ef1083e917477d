"""OAuth against the simulator with unmodified simple-salesforce and the project's client."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession

from simulator.app import RunningSimulator
from streams.salesforce.auth import login
from streams.salesforce.errors import LoginFailed
from streams.salesforce.rest import connect
from tests.simulator.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USERNAME,
    auth_config,
    fault,
    login_domain,
    session_for,
)


def test_simple_salesforce_password_login(sim: RunningSimulator) -> None:
    sf = Salesforce(
        username=USERNAME,
        password=PASSWORD,
        consumer_key=CLIENT_ID,
        consumer_secret=CLIENT_SECRET,
        domain=login_domain(sim),
        session=session_for(sim),
    )
    assert sf.sf_instance == sim.url.removeprefix("https://")
    assert sf.query("SELECT Id, Username FROM User")["records"][0]["Username"] == USERNAME


def test_simple_salesforce_soap_login_with_security_token(sim: RunningSimulator) -> None:
    sf = Salesforce(
        username=USERNAME,
        password=PASSWORD,
        security_token="any-token",
        domain=login_domain(sim),
        session=session_for(sim),
    )
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 1
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        Salesforce(
            username=USERNAME,
            password="wrong",
            security_token="x",
            domain=login_domain(sim),
            session=session_for(sim),
        )
    assert refused.value.code == "INVALID_LOGIN"


def test_simple_salesforce_wrong_password_refused(sim: RunningSimulator) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        Salesforce(
            username=USERNAME,
            password="wrong",
            consumer_key=CLIENT_ID,
            consumer_secret=CLIENT_SECRET,
            domain=login_domain(sim),
            session=session_for(sim),
        )
    assert refused.value.code == "invalid_grant"


def test_simple_salesforce_jwt_login(sim: RunningSimulator) -> None:
    assert sim.state.jwt_key_file is not None
    sf = Salesforce(
        username=USERNAME,
        consumer_key=CLIENT_ID,
        privatekey_file=str(sim.state.jwt_key_file),
        domain=login_domain(sim),
        session=session_for(sim),
    )
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 1


def _other_key(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "other.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_jwt_signed_with_wrong_key_refused(sim: RunningSimulator, tmp_path: Path) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        Salesforce(
            username=USERNAME,
            consumer_key=CLIENT_ID,
            privatekey_file=str(_other_key(tmp_path)),
            domain=login_domain(sim),
            session=session_for(sim),
        )
    assert refused.value.code == "invalid_grant"
    with pytest.raises(LoginFailed, match="invalid_grant"):
        login(auth_config(sim, private_key_file=_other_key(tmp_path)), session_for(sim))


def test_jwt_claims_are_checked(sim: RunningSimulator) -> None:
    assert sim.state.jwt_key_file is not None
    key = sim.state.jwt_key_file.read_bytes()
    token_url = sim.url + "/services/oauth2/token"
    good = {"iss": CLIENT_ID, "sub": USERNAME, "aud": sim.url, "exp": int(time.time()) + 60}
    cases = {
        "expired": {**good, "exp": int(time.time()) - 10},
        "wrong issuer": {**good, "iss": "someone-else"},
        "unknown user": {**good, "sub": "nobody@example.com"},
        "wrong audience": {**good, "aud": "https://example.com"},
    }
    session = session_for(sim)
    for name, claims in cases.items():
        assertion = jwt.encode(claims, key, algorithm="RS256")
        answer = session.post(
            token_url,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            },
        )
        assert answer.status_code == 400, name
    assertion = jwt.encode(good, key, algorithm="RS256")
    answer = session.post(
        token_url,
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    )
    assert answer.status_code == 200
    assert answer.json()["instance_url"] == sim.url


def test_project_client_jwt_and_refresh_flows(sim: RunningSimulator) -> None:
    session = session_for(sim)
    password = login(auth_config(sim), session)
    assert password.refresh_token
    refreshed = login(
        auth_config(sim, password=None, refresh_token=password.refresh_token), session
    )
    assert refreshed.access_token != password.access_token
    jwt_login = login(
        auth_config(sim, password=None, private_key_file=sim.state.jwt_key_file), session
    )
    assert jwt_login.instance_url == sim.url


def test_jwt_key_from_the_environment_and_secrets_not_in_repr(
    sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sfe.settings import load_settings
    from streams.salesforce.rest import auth_config as settings_auth_config

    assert sim.state.jwt_key_file is not None
    pem = sim.state.jwt_key_file.read_text()
    monkeypatch.setenv("SFE_SF_PRIVATE_KEY", pem)
    monkeypatch.setenv("SFE_SF_LOGIN_URL", sim.url)
    monkeypatch.setenv("SFE_SF_CA_BUNDLE", str(sim.state.tls_files.ca_cert))
    config = settings_auth_config(load_settings())
    assert config.flow == "jwt" and config.private_key_file is None
    assert "PRIVATE KEY" not in repr(config)
    assert login(config, session_for(sim)).instance_url == sim.url


def test_client_credentials(sim: RunningSimulator) -> None:
    answer = session_for(sim).post(
        sim.url + "/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert answer.status_code == 200
    assert answer.json()["token_type"] == "Bearer"


def test_revoked_and_expired_tokens_get_invalid_session(sim: RunningSimulator) -> None:
    session = session_for(sim)
    token = login(auth_config(sim), session).access_token
    url = sim.url + "/services/data/v62.0/limits"
    assert session.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert (
        session.post(sim.url + "/services/oauth2/revoke", data={"token": token}).status_code == 200
    )
    answer = session.get(url, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert answer.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_short_lived_tokens_expire(start_sim: object) -> None:
    short = start_sim(token_ttl_seconds=0.5)  # type: ignore[operator]
    session = session_for(short)
    token = login(auth_config(short), session).access_token
    time.sleep(0.8)
    answer = session.get(
        short.url + "/services/data/v62.0/limits", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 401
    assert answer.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_project_client_logs_in_again_after_sessions_expire(sim: RunningSimulator) -> None:
    sf = connect(auth_config(sim))
    before = sf.session_id
    fault(sim, action="expire_sessions")
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 1
    assert sf.session_id != before
    bare = Salesforce(instance_url=sim.url, session_id=sf.session_id, session=session_for(sim))
    fault(sim, action="expire_sessions")
    with pytest.raises(SalesforceExpiredSession):
        bare.query("SELECT COUNT() FROM User")


def test_ca_bundle_wins_over_environment(
    sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(empty))
    assert login(auth_config(sim), session_for(sim)).access_token
    plain = requests.Session()
    with pytest.raises(requests.exceptions.SSLError):
        plain.post(sim.url + "/services/oauth2/token", data={})
