"""Objects written only if nobody else wrote them since they were read: the conditional
writes that the leader lease and the reconciler's record use on GCS and on Azure Blob
Storage (engine/lease.py, engine/state_store.py), as the S3 backend's DynamoDB lock table
gives them on AWS.

GCS compares generations (`ifGenerationMatch`, where 0 means "no live object"), Azure
compares ETags (`If-Match`, `If-None-Match: *`); both answer 412 when another writer came
first (Azure answers 409 instead for an existing blob under `If-None-Match: *`). Sources:
Cloud Storage JSON API, "Request preconditions"; Azure Storage REST API, "Specifying
conditional headers for Blob service operations" and "Put Blob".

Plain `requests` against a base URL, as in clouds/rest.py, so the same code runs against the
real services and against the HTTP fakes in the tests. Every failure is a StateError of one
line naming the object; a token never appears in one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol
from urllib.parse import quote, urlsplit

import requests

from reconciler.clouds.rest import TokenProvider, retrying_session
from reconciler.errors import CredentialsError, StateError, WrittenMeanwhile


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the version they were read at (GCS generation, Azure ETag)."""

    data: bytes
    token: str


class ConditionalObjects(Protocol):
    """A bucket (or container) of small objects with compare-and-swap writes."""

    def where(self, name: str) -> str:
        """The object's address, for messages."""
        ...

    def remove_command(self, name: str) -> str:
        """The command line an operator runs to remove the object by hand."""
        ...

    def get(self, name: str) -> Versioned | None:
        """The object, or None when there is none."""
        ...

    def put(self, name: str, data: bytes, *, if_token: str | None) -> str:
        """Write `data` only if the object is still at `if_token` (None: only if there is no
        object); the new version, or WrittenMeanwhile."""
        ...

    def delete(self, name: str, *, if_token: str | None = None) -> None:
        """Remove the object (only if still at `if_token`, when given); gone already is fine,
        a newer version is WrittenMeanwhile."""
        ...


class _Http:
    """One request, every failure as a StateError naming the object and the API."""

    def __init__(
        self, api: str, tokens: TokenProvider, hint: str, session: requests.Session | None
    ) -> None:
        self.api = api
        self.tokens = tokens
        self.hint = hint
        self.session = session or retrying_session()
        self.timeout = 15.0

    def send(
        self,
        method: str,
        url: str,
        where: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        try:
            token = self.tokens.token()
        except CredentialsError as exc:
            raise StateError(f"{where}: {exc}") from None
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        try:
            response = self.session.request(
                method,
                url,
                params=dict(params or {}),
                headers=sent,
                data=data,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            host = urlsplit(url).netloc
            raise StateError(
                f"{where}: cannot reach {self.api} at {host} ({type(exc).__name__})"
            ) from None
        if response.status_code in (401, 403):
            raise StateError(
                f"{where}: {self.api} refused access (HTTP {response.status_code}): {self.hint}"
            )
        return response

    def fail(self, response: requests.Response, where: str, doing: str) -> StateError:
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        return StateError(
            f"{where}: {self.api} could not {doing} (HTTP {response.status_code}"
            + (f": {text})" if text else ")")
        )


GCS_URL = "https://storage.googleapis.com"
GCS_HINT = (
    "the credentials need storage.objects.get/create/delete on the bucket (roles/storage."
    "objectUser); set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default "
    "login`"
)


class GcsObjects:
    """Objects of one GCS bucket through the JSON API (media download and upload)."""

    def __init__(
        self,
        bucket: str,
        tokens: TokenProvider,
        *,
        base_url: str = GCS_URL,
        session: requests.Session | None = None,
    ) -> None:
        self.bucket = bucket
        self.base_url = base_url.rstrip("/")
        self.http = _Http("Cloud Storage", tokens, GCS_HINT, session)

    def where(self, name: str) -> str:
        return f"gs://{self.bucket}/{name}"

    def remove_command(self, name: str) -> str:
        return f"gcloud storage rm gs://{self.bucket}/{name}"

    def _object_url(self, name: str) -> str:
        return f"{self.base_url}/storage/v1/b/{self.bucket}/o/{quote(name, safe='')}"

    def get(self, name: str) -> Versioned | None:
        where = self.where(name)
        response = self.http.send("GET", self._object_url(name), where, params={"alt": "media"})
        if response.status_code == 404:
            return None
        generation = response.headers.get("x-goog-generation", "")
        if response.status_code != 200 or not generation.isdigit():
            raise self.http.fail(response, where, "read the object")
        return Versioned(response.content, generation)

    def put(self, name: str, data: bytes, *, if_token: str | None) -> str:
        where = self.where(name)
        response = self.http.send(
            "POST",
            f"{self.base_url}/upload/storage/v1/b/{self.bucket}/o",
            where,
            params={"uploadType": "media", "name": name, "ifGenerationMatch": if_token or "0"},
            headers={"Content-Type": "application/json"},
            data=data,
        )
        if response.status_code == 412:
            raise WrittenMeanwhile(where)
        if response.status_code != 200:
            raise self.http.fail(response, where, "write the object")
        try:
            return str(int(response.json()["generation"]))
        except (ValueError, KeyError, TypeError):
            raise self.http.fail(response, where, "say which generation it wrote") from None

    def delete(self, name: str, *, if_token: str | None = None) -> None:
        where = self.where(name)
        params = {"ifGenerationMatch": if_token} if if_token else {}
        response = self.http.send("DELETE", self._object_url(name), where, params=params)
        if response.status_code == 412:
            raise WrittenMeanwhile(where)
        if response.status_code not in (200, 204, 404):
            raise self.http.fail(response, where, "remove the object")


AZURE_STORAGE_SCOPE = "https://storage.azure.com/.default"
AZURE_BLOB_API = "2021-08-06"  # any version from 2017-11-09 takes Azure AD bearer tokens
AZURE_HINT = (
    "the identity needs the Storage Blob Data Contributor role on the container (Azure AD, as "
    "the azurerm backend's use_azuread_auth); set AZURE_CLIENT_ID, AZURE_TENANT_ID and "
    "AZURE_CLIENT_SECRET, or run `az login`"
)


class AzureBlobs:
    """Block blobs of one Azure Storage container through the Blob service REST API."""

    def __init__(
        self,
        account: str,
        container: str,
        tokens: TokenProvider,
        *,
        base_url: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.account = account
        self.container = container
        self.base_url = (base_url or f"https://{account}.blob.core.windows.net").rstrip("/")
        self.http = _Http("Azure Blob Storage", tokens, AZURE_HINT, session)

    def where(self, name: str) -> str:
        return f"blob {self.container}/{name} in storage account {self.account}"

    def remove_command(self, name: str) -> str:
        return (
            f"az storage blob delete --auth-mode login --account-name {self.account} "
            f"--container-name {self.container} --name {name}"
        )

    def _url(self, name: str) -> str:
        return f"{self.base_url}/{self.container}/{quote(name)}"

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"x-ms-version": AZURE_BLOB_API, "x-ms-date": formatdate(usegmt=True), **extra}

    def get(self, name: str) -> Versioned | None:
        where = self.where(name)
        response = self.http.send("GET", self._url(name), where, headers=self._headers())
        if response.status_code == 404:
            return None
        etag = response.headers.get("ETag", "")
        if response.status_code != 200 or not etag:
            raise self.http.fail(response, where, "read the blob")
        return Versioned(response.content, etag)

    def put(self, name: str, data: bytes, *, if_token: str | None) -> str:
        where = self.where(name)
        condition = {"If-Match": if_token} if if_token else {"If-None-Match": "*"}
        headers = self._headers(
            **condition, **{"x-ms-blob-type": "BlockBlob", "Content-Type": "application/json"}
        )
        response = self.http.send("PUT", self._url(name), where, headers=headers, data=data)
        if response.status_code in (409, 412):
            raise WrittenMeanwhile(where)
        etag = response.headers.get("ETag", "")
        if response.status_code != 201 or not etag:
            raise self.http.fail(response, where, "write the blob")
        return etag

    def delete(self, name: str, *, if_token: str | None = None) -> None:
        where = self.where(name)
        headers = self._headers(**({"If-Match": if_token} if if_token else {}))
        response = self.http.send("DELETE", self._url(name), where, headers=headers)
        if response.status_code == 412:
            raise WrittenMeanwhile(where)
        if response.status_code not in (200, 202, 404):
            raise self.http.fail(response, where, "remove the blob")
