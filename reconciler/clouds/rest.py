"""A small JSON-over-HTTPS client for the GCP and Azure REST APIs, with bearer tokens.

Plain `requests` against a configurable base URL rather than the cloud SDKs: the same code runs
against the real endpoints and against an HTTP fake on 127.0.0.1 in the tests, and the wire
format (pagination, 401/429) is exercised instead of mocked away. Retries with exponential
backoff and jitter come from urllib3's `Retry` (honours `Retry-After`), not a hand-made loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from reconciler.errors import AdapterError, CredentialsError, ThrottledError

RETRY_STATUSES = (429, 500, 502, 503, 504)
# A query: a list value repeats its parameter (Monitoring's `aggregation.groupByFields`).
Params = Mapping[str, str | Sequence[str]]


class TokenProvider(Protocol):
    def token(self) -> str:
        """A bearer token valid for at least a minute; raises CredentialsError when none."""
        ...


class StaticToken:
    """A token given up front (tests, or `GOOGLE_OAUTH_ACCESS_TOKEN` as Terraform accepts)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token


def retrying_session(
    max_attempts: int = 5, backoff_factor: float = 0.5, backoff_max: float = 20.0
) -> requests.Session:
    """A session that retries GETs on throttling/5xx with exponential backoff plus jitter."""
    retry = Retry(
        total=max_attempts - 1,
        status=max_attempts - 1,
        backoff_factor=backoff_factor,
        backoff_jitter=backoff_factor,
        backoff_max=backoff_max,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,  # hand back the last 429 so the error names it
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class RestClient:
    """GET JSON from one API with a bearer token; every failure becomes a one-line error."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        api: str,
        credentials_hint: str,
        session: requests.Session | None = None,
        timeout: float = 15.0,
        max_attempts: int = 5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.api = api
        self.credentials_hint = credentials_hint
        self.session = session or retrying_session(max_attempts)
        self.timeout = timeout
        self.max_attempts = max_attempts

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def get_json(self, url: str, params: Params | None = None) -> dict[str, Any]:
        """GET `url` (absolute, under base_url) and return its JSON object."""
        headers = {"Authorization": f"Bearer {self.tokens.token()}", "Accept": "application/json"}
        where = urlsplit(url).path
        try:
            response = self.session.get(
                url, params=dict(params or {}), headers=headers, timeout=self.timeout
            )
        except requests.exceptions.RetryError as exc:
            raise ThrottledError(
                f"{self.api}: GET {where} kept failing after retries: {exc}"
            ) from None
        except requests.RequestException as exc:
            host = urlsplit(url).netloc
            raise AdapterError(f"{self.api}: cannot reach {host}: {type(exc).__name__}") from None
        status = response.status_code
        if status == 401:
            raise CredentialsError(
                f"{self.api} rejected the credentials (HTTP 401): {self.credentials_hint}"
            )
        if status == 429:
            raise ThrottledError(
                f"{self.api}: still throttled (HTTP 429) after {self.max_attempts} attempts on "
                f"GET {where}; try again later or poll less often"
            )
        if status >= 400:
            raise AdapterError(
                f"{self.api}: GET {where} failed: HTTP {status}: {_detail(response)}"
            )
        try:
            data = response.json()
        except ValueError:
            raise AdapterError(
                f"{self.api}: GET {where} returned non-JSON (HTTP {status})"
            ) from None
        if not isinstance(data, dict):
            raise AdapterError(f"{self.api}: GET {where} returned JSON that is not an object")
        return data

    def pages_by_token(
        self, url: str, params: Params, *, max_pages: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Google-style pagination: `nextPageToken` in the body, `pageToken` in the query."""
        query = dict(params)
        for _ in range(max_pages):
            page = self.get_json(url, query)
            yield page
            token = page.get("nextPageToken")
            if not token:
                return
            query["pageToken"] = str(token)
        raise AdapterError(f"{self.api}: more than {max_pages} pages from {urlsplit(url).path}")

    def pages_by_link(
        self, url: str, params: Params, *, max_pages: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Azure-style pagination: an absolute `nextLink` carrying its own query.

        The link is followed only on the same scheme and host as the base URL, so the bearer
        token is never sent anywhere else.
        """
        next_url: str | None = url
        query: Params | None = params
        for _ in range(max_pages):
            assert next_url is not None
            page = self.get_json(next_url, query)
            yield page
            link = page.get("nextLink")
            if not link:
                return
            next_url, query = urljoin(self.base_url + "/", str(link)), None
            base = urlsplit(self.base_url)
            target = urlsplit(next_url)
            if (target.scheme, target.netloc) != (base.scheme, base.netloc):
                raise AdapterError(
                    f"{self.api}: refusing nextLink to another host ({target.netloc})"
                )
        raise AdapterError(f"{self.api}: more than {max_pages} pages from {urlsplit(url).path}")


def _detail(response: requests.Response) -> str:
    """The API's own error message (GCP and Azure both use {"error": {"message": ...}})."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason or "no body"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("status") or error.get("code") or ""
        return f"{code}: {error.get('message', '')}".strip(": ")
    return str(body)[:200]
