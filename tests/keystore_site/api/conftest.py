"""API test fixtures: API clients per role, and a caller that speaks to /api/v1 like a Cloud
Integration script (HTTP Basic or a bearer token, CSRF token fetched before writes)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pytest
from django.test import Client

from keystore_site.api import clients


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@dataclass
class Caller:
    client_id: str
    secret: str
    http: Client = field(default_factory=Client)
    bearer: str = ""
    csrf: str = ""

    @property
    def authorization(self) -> str:
        return f"Bearer {self.bearer}" if self.bearer else basic(self.client_id, self.secret)

    def get(self, path: str, **headers):
        return self.http.get(path, HTTP_AUTHORIZATION=self.authorization, headers=headers)

    def fetch_csrf(self) -> str:
        response = self.get("/api/v1/", **{"X-CSRF-Token": "Fetch"})
        self.csrf = response["X-CSRF-Token"]
        return self.csrf

    def send(self, method: str, path: str, body=b"", content_type="application/json", csrf=True):
        if csrf and not self.csrf:
            self.fetch_csrf()
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.http.generic(
            method,
            path,
            body,
            content_type=content_type,
            HTTP_AUTHORIZATION=self.authorization,
            headers=headers,
        )


@pytest.fixture
def api_caller(tenant):
    """api_caller(role="Administrator", tenant=tenant) -> a Caller for a new API client."""
    made = []

    def make(role: str = "Administrator", of_tenant=None) -> Caller:
        client, secret = clients.create_api_client(
            of_tenant or tenant, f"script-{role}-{len(made)}", role
        )
        made.append(client)
        return Caller(client.client_id, secret)

    return make
