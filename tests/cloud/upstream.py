"""AirflowUpstream: how a managed service's stand-in calls the real Airflow of the local stack.

The managed services call Airflow as a user of their own (MWAA's web-login role, Composer's
and Astronomer's proxies): this plays that part with the devstack admin, basic auth on
Airflow 2 and a JWT from ``POST /auth/token`` on Airflow 3 (fetched again after a 401).
"""

from __future__ import annotations

import threading
from typing import Any

import requests

from devstack.airflow import AirflowServer

_HTTP_UNAUTHORIZED = 401


class AirflowUpstream:
    """Sends calls to one devstack Airflow with its admin's credentials; thread-safe."""

    def __init__(self, server: AirflowServer) -> None:
        """Keep the server; the first call on Airflow 3 logs in."""
        described = server.describe()
        self.url = server.url
        self.api = server.api_version
        self._user, self._password = described["username"], described["password"]
        self._session = requests.Session()
        self._session.trust_env = False
        self._lock = threading.Lock()
        self._jwt: str | None = None

    def _headers(self, refresh: bool) -> dict[str, str]:
        if self.api == "v1":
            return {}
        with self._lock:
            if self._jwt is None or refresh:
                answer = self._session.post(
                    f"{self.url}/auth/token",
                    json={"username": self._user, "password": self._password},
                    timeout=30,
                )
                answer.raise_for_status()
                self._jwt = str(answer.json()["access_token"])
            return {"Authorization": f"Bearer {self._jwt}"}

    def call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: bytes | None = None,
        prefixed: bool = False,
    ) -> requests.Response:
        """One call to Airflow as the service's own user.

        Args:
            method: the HTTP method.
            path: the path below ``/api/vN`` (or, ``prefixed``, below the base URL).
            query: query parameters.
            body: a JSON body, as bytes.
            prefixed: ``path`` already carries ``/api/vN`` (a proxy forwarding a URL).

        Returns:
            Airflow's answer.
        """
        url = f"{self.url}{path}" if prefixed else f"{self.url}/api/{self.api}{path}"
        auth = None if self.api == "v2" else (self._user, self._password)
        headers = {"Content-Type": "application/json"} if body else {}
        for refresh in (False, True):
            answer = self._session.request(
                method,
                url,
                params=query,
                data=body,
                headers={**headers, **self._headers(refresh)},
                auth=auth,
                timeout=60,
            )
            if answer.status_code != _HTTP_UNAUTHORIZED or self.api == "v1":
                return answer
        return answer

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()
