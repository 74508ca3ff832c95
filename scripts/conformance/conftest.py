"""Fixtures for the openai-sim conformance suite: SDK clients, raw HTTP, admin calls, the spec.

Environment:
  SIM_BASE_URL  the simulator's API root, e.g. http://127.0.0.1:8787/v1 (required)
  SIM_API_KEY   a key the simulator accepts (required; start it with --api-key so 401 is testable)
  OPENAI_SPEC   OpenAI's openapi.yaml (default: spec/openai/openapi.yaml in the repository)
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import openai
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: start the simulator and point {name} at it", returncode=2)
    return value


@pytest.fixture(scope="session")
def base_url() -> str:
    return _env("SIM_BASE_URL").rstrip("/")


@pytest.fixture(scope="session")
def api_key() -> str:
    return _env("SIM_API_KEY")


@pytest.fixture(scope="session")
def root_url(base_url: str) -> str:
    """Where /sim/... lives: the API root without its /v1."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


@pytest.fixture(scope="session")
def client(base_url: str, api_key: str) -> openai.OpenAI:
    # No retries: a retried 409 or 5xx would hide what the simulator answered.
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)


@dataclass
class Reply:
    """A raw HTTP answer."""

    status_code: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


class Raw:
    """Plain HTTP (stdlib only) for exact bodies and headers, independent of the SDK."""

    def __init__(self, base: str, api_key: str | None = None):
        self._base = base.rstrip("/")
        self._key = api_key

    def request(self, method: str, path: str, *, params: dict | None = None, json_body=None) -> Reply:
        url = self._base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if json_body is None else json.dumps(json_body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self._key:
            req.add_header("Authorization", f"Bearer {self._key}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Reply:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw) -> Reply:
        return self.request("DELETE", path, **kw)


@pytest.fixture(scope="session")
def http(base_url: str, api_key: str) -> Raw:
    """Raw HTTP under /v1, authorised like the SDK."""
    return Raw(base_url, api_key)


class Admin:
    """The simulator's admin routes (no auth): faults and the simulated clock."""

    def __init__(self, root_url: str):
        self._http = Raw(root_url)

    def faults(self, config: dict) -> None:
        r = self._http.post("/sim/faults", json_body=config)
        assert r.status_code == 200, r.text

    def advance(self, seconds: float) -> int:
        r = self._http.post("/sim/clock/advance", params={"seconds": seconds})
        assert r.status_code == 200, r.text
        return r.json()["now"]

    def stats(self) -> dict:
        r = self._http.get("/sim/stats")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def admin(root_url: str):
    a = Admin(root_url)
    yield a
    # Whatever a test forced, the next test starts without faults.
    a.faults({})


def wait_for(client: openai.OpenAI, batch_id: str, until, timeout: float = 30.0):
    """Polls a batch until `until(batch)` holds; returns it and every status seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if until(batch):
            return batch, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} stuck: statuses {seen}, last {batch.model_dump_json()}")
        time.sleep(0.01)


TERMINAL = {"completed", "failed", "expired", "cancelled"}
