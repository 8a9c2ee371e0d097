"""``AIRFLOW_AUTH``: how the client's session reaches Airflow, per mode (issue 32).

- ``auto``: the credentials given. A username/password logs in per API version
  (``Transport``); a token is sent as it is, and a token *file* is re-read when it changes
  (``token_file.py``, Astronomer's Deployment API tokens).
- ``mwaa``: every call goes through MWAA's ``InvokeRestApi`` (``mwaa.py``), mounted on the
  session for the Airflow URL; AWS credentials sign it, so no Airflow credential is sent.
- ``google``: Google access tokens (``google_auth.py``) for Cloud Composer.

The boto3 and google-auth imports happen only in their own mode.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from consumer.airflow.auth import ApiAuth, StaticToken
from consumer.airflow.calls import OnCall
from consumer.airflow.connection import AirflowConnection
from consumer.airflow.token_file import TokenFileAuth
from consumer.errors import ConfigError


def prepare_session(
    connection: AirflowConnection,
    session: requests.Session,
    url_root: str,
    *,
    on_login: OnCall,
) -> ApiAuth | None:
    """Set up ``session`` for the connection's auth mode.

    Args:
        connection: the connection (its ``auth`` and credentials).
        session: the client's session; ``mwaa`` mounts its adapter on it.
        url_root: the prepared Airflow base URL (the adapter's mount prefix).
        on_login: the hook counting token calls (Google).

    Returns:
        The auth every request carries whatever the API version (a token, a token file,
        Google's), or None when it depends on the version (username/password) or there is
        none.

    Raises:
        ConfigError: missing AWS or Google credentials or region, or no environment name.
    """
    timeout = (connection.connect_timeout, connection.read_timeout)
    if connection.auth == "mwaa":
        from consumer.airflow.mwaa import MwaaAdapter, make_mwaa_client  # noqa: PLC0415

        if not connection.mwaa_environment:
            raise ConfigError("AIRFLOW_AUTH=mwaa needs TRIGGER_CONSUMER_MWAA_ENVIRONMENT")
        client = make_mwaa_client(*timeout, pool_size=connection.pool_size)
        adapter = MwaaAdapter(
            client, connection.mwaa_environment, root_path=urlsplit(url_root).path
        )
        session.mount(url_root + "/", adapter)
        return None
    if connection.auth == "google":
        from consumer.airflow.google_auth import GoogleAuth, default_credentials  # noqa: PLC0415

        return GoogleAuth(
            default_credentials(),
            timeout=timeout,
            refresh_margin=connection.jwt_refresh_margin,
            on_call=on_login,
        )
    if connection.token_file is not None:
        return TokenFileAuth(connection.token_file, initial=connection.token)
    if connection.token is not None:
        return StaticToken(connection.token)
    return None
