"""`hedgeform prices refresh`: the Azure Retail Prices API and the GCP Cloud Billing Catalog
API, faked at the HTTP level by a local server that answers pages in the APIs' documented
shapes. No network."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.clouds.catalog import MACHINE_SIZES
from reconciler.clouds.prices import CATALOG_PATH
from reconciler.engine.prices_cmd import refresh_catalog
from reconciler.errors import CloudApiError

Handler = Callable[[str, dict[str, list[str]]], tuple[int, Any]]


class FakeApi:
    """A local HTTP server; `handler(path, query)` gives (status, JSON body or raw text)."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                outer.requests.append((url.path, query))
                status, body = handler(url.path, query)
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], FakeApi]]:
    started: list[FakeApi] = []

    def start(handler: Handler) -> FakeApi:
        started.append(FakeApi(handler))
        return started[-1]

    yield start
    for api in started:
        api.close()


def azure_item(size: str, sku: str, price: float, **extra: Any) -> dict[str, Any]:
    """An item as the Retail Prices API documents it (the fields we read and a few more)."""
    item = {
        "currencyCode": "USD",
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": "eastus",
        "location": "US East",
        "effectiveStartDate": "2026-01-01T00:00:00Z",
        "meterName": sku,
        "productName": "Virtual Machines NCasT4_v3 Series",
        "skuName": sku,
        "serviceName": "Virtual Machines",
        "armSkuName": size,
        "type": "Consumption",
        "unitOfMeasure": "1 Hour",
        "isPrimaryMeterRegion": True,
    }
    item.update(extra)
    return item


def azure_pages(base: str) -> Handler:
    t4 = "Standard_NC4as_T4_v3"
    page1 = {
        "BillingCurrency": "USD",
        "Items": [
            azure_item(t4, "NC4as T4 v3", 0.526),
            azure_item(
                t4, "NC4as T4 v3", 0.99, productName="Virtual Machines NCasT4_v3 Series Windows"
            ),
            azure_item(t4, "NC4as T4 v3 Low Priority", 0.105),
        ],
        "NextPageLink": f"{base}/api/retail/prices?page=2",
        "Count": 3,
    }
    page2 = {
        "BillingCurrency": "USD",
        "Items": [
            azure_item(t4, "NC4as T4 v3 Spot", 0.0627),
            azure_item(t4, "NC4as T4 v3 Spot", 0.05, effectiveStartDate="2025-01-01T00:00:00Z"),
            azure_item(
                "Standard_NC6s_v3", "NC6s v3", 3.06, productName="Virtual Machines NCSv3 Series"
            ),
        ],
        "NextPageLink": None,
        "Count": 3,
    }

    def handler(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if query.get("page") == ["2"]:
            return 200, page2
        flt = query["$filter"][0]
        if "armRegionName eq 'eastus'" not in flt:
            return 200, {"Items": [], "NextPageLink": None}
        return 200, page1

    return handler


def test_azure_refresh_reads_every_page_and_keeps_linux_consumption_prices(
    tmp_path: Path, serve: Callable[[Handler], FakeApi]
) -> None:
    handlers: list[Handler] = []
    api = serve(lambda path, query: handlers[0](path, query))
    handlers.append(azure_pages(api.url))  # NextPageLink names the server's own URL
    out = tmp_path / "prices.json"
    refreshed, kept = refresh_catalog(
        "azure", out, ["eastus", "westeurope"], url=f"{api.url}/api/retail/prices",
        today="2026-12-01",
    )  # fmt: skip
    data = json.loads(out.read_text())
    eastus = data["clouds"]["azure"]["regions"]["eastus"]
    t4 = eastus["Standard_NC4as_T4_v3"]
    assert t4["on_demand"] == 0.526  # not Windows' 0.99, not Low Priority
    assert t4["spot"] == {"eastus-1": 0.0627, "eastus-2": 0.0627, "eastus-3": 0.0627}  # newest
    assert t4["as_of"] == "2026-12-01"
    assert t4["source"].startswith(f"{api.url}/api/retail/prices?$filter=serviceName eq")
    assert eastus["Standard_NC6s_v3"] == {
        "on_demand": 3.06,
        "spot": {},
        "source": t4["source"],
        "as_of": "2026-12-01",
    }
    assert (refreshed, kept) == (2, 1)
    # westeurope listed nothing: its placeholder entry stays, still marked
    west = data["clouds"]["azure"]["regions"]["westeurope"]["Standard_NC4as_T4_v3"]
    assert west["source"] == "placeholder"
    shipped = json.loads(CATALOG_PATH.read_text())
    assert data["clouds"]["aws"] == shipped["clouds"]["aws"]
    assert data["clouds"]["gcp"] == shipped["clouds"]["gcp"]
    # the filter asks for every Azure size of the catalog, and the second page was followed
    first = api.requests[0][1]["$filter"][0]
    assert "armSkuName eq 'Standard_NC40ads_H100_v5'" in first
    assert any(q.get("page") == ["2"] for _, q in api.requests)


def gcp_sku(description: str, usage: str, price: float, regions: list[str]) -> dict[str, Any]:
    units, nanos = int(price), round((price - int(price)) * 1e9)
    return {
        "name": f"services/6F81-5844-456A/skus/{abs(hash(description)) % 10**8}",
        "skuId": "X",
        "description": description,
        "category": {
            "serviceDisplayName": "Compute Engine",
            "resourceFamily": "Compute",
            "resourceGroup": "GPU" if "GPU" in description else "CPU",
            "usageType": usage,
        },
        "serviceRegions": regions,
        "pricingInfo": [
            {
                "effectiveTime": "2026-11-30T00:00:00Z",
                "pricingExpression": {
                    "usageUnit": "h",
                    "displayQuantity": 1,
                    "tieredRates": [
                        {
                            "startUsageAmount": 0,
                            "unitPrice": {
                                "currencyCode": "USD",
                                "units": str(units),
                                "nanos": nanos,
                            },
                        }
                    ],
                },
            }
        ],
    }


GCP_PAGES = {
    "": {
        "skus": [
            gcp_sku("G2 Instance Core running in Americas", "OnDemand", 0.024, ["us-central1"]),
            gcp_sku("G2 Instance Ram running in Americas", "OnDemand", 0.0028, ["us-central1"]),
            gcp_sku("G2 Instance Core running in Americas", "Commit1Yr", 0.01, ["us-central1"]),
        ],
        "nextPageToken": "p2",
    },
    "p2": {
        "skus": [
            gcp_sku("Nvidia L4 GPU running in Americas", "OnDemand", 0.56, ["us-central1"]),
            gcp_sku(
                "Spot Preemptible G2 Instance Core running in Americas",
                "Preemptible",
                0.01,
                ["us-central1"],
            ),
            gcp_sku(
                "Spot Preemptible G2 Instance Ram running in Americas",
                "Preemptible",
                0.001,
                ["us-central1"],
            ),
            gcp_sku(
                "Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas",
                "Preemptible",
                0.22,
                ["us-central1"],
            ),
            gcp_sku(
                "N1 Predefined Instance Core running in Americas",
                "OnDemand",
                0.031,
                ["us-central1"],
            ),
            gcp_sku(
                "N1 Predefined Instance Ram running in Americas", "OnDemand", 0.004, ["us-central1"]
            ),
            gcp_sku("Nvidia Tesla T4 GPU running in Americas", "OnDemand", 0.35, ["us-central1"]),
        ],
        "nextPageToken": "",
    },
}


def gcp_handler(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
    if query.get("key") != ["k3y"]:
        return 403, {"error": {"code": 403, "message": "API key not valid."}}
    return 200, GCP_PAGES[query.get("pageToken", [""])[0]]


def test_gcp_refresh_prices_a_machine_as_its_parts(
    tmp_path: Path, serve: Callable[[Handler], FakeApi]
) -> None:
    api = serve(gcp_handler)
    out = tmp_path / "prices.json"
    refreshed, _ = refresh_catalog(
        "gcp", out, ["us-central1", "us-east4"], api_key="k3y",
        url=f"{api.url}/v1/services/6F81-5844-456A/skus", today="2026-12-01",
    )  # fmt: skip
    regions = json.loads(out.read_text())["clouds"]["gcp"]["regions"]
    vcpus, gib = MACHINE_SIZES["gcp"]["g2-standard-8"]
    g2 = regions["us-central1"]["g2-standard-8"]
    assert g2["on_demand"] == pytest.approx(vcpus * 0.024 + gib * 0.0028 + 0.56)
    spot = vcpus * 0.01 + gib * 0.001 + 0.22
    assert g2["spot"] == {
        z: pytest.approx(spot)
        for z in ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f")
    }
    assert "8 x G2 Instance Core + 32 x G2 Instance Ram + 1 x Nvidia L4 GPU" in g2["source"]
    assert g2["as_of"] == "2026-12-01"
    # N1 with a T4 is keyed by its price key; no spot SKUs for it: on-demand only
    n1 = regions["us-central1"]["n1-standard-8+1xT4"]
    assert n1["on_demand"] == pytest.approx(8 * 0.031 + 30 * 0.004 + 0.35)
    assert n1["spot"] == {}
    assert "n1-standard-8+1xV100" not in regions["us-central1"]  # no V100 SKU: left out
    assert refreshed == 5  # g2-standard-8, -24, -48 and n1-standard-8/-32 with T4s
    # us-east4 had no SKUs: its entry stays as shipped, source and date included
    shipped = json.loads(CATALOG_PATH.read_text())["clouds"]["gcp"]["regions"]
    assert regions["us-east4"]["g2-standard-8"] == shipped["us-east4"]["g2-standard-8"]
    assert [q.get("pageToken") for _, q in api.requests] == [None, ["p2"]]


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (500, "upstream exploded", "HTTP 500 from"),
        (200, "<html>not json</html>", "the answer is not JSON"),
        (200, [1, 2], "a JSON list, not an object"),
        (200, {"Items": "nope"}, "no 'Items' list"),
        (200, {"Items": [{"retailPrice": 1.0}], "NextPageLink": None}, "unexpected item"),
        (200, {"Items": [], "NextPageLink": 7}, "'NextPageLink' is not a URL"),
    ],
)
def test_azure_failures_are_one_line(
    tmp_path: Path, serve: Callable[[Handler], FakeApi], status: int, body: Any, said: str
) -> None:
    api = serve(lambda path, query: (status, body))
    out = tmp_path / "prices.json"
    with pytest.raises(CloudApiError) as caught:
        refresh_catalog("azure", out, ["eastus"], url=f"{api.url}/api/retail/prices")
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not out.exists()  # nothing written on a failure


def test_gcp_failures_never_show_the_api_key(
    tmp_path: Path, serve: Callable[[Handler], FakeApi]
) -> None:
    api = serve(gcp_handler)
    url = f"{api.url}/v1/services/6F81-5844-456A/skus"
    with pytest.raises(CloudApiError, match=r"HTTP 403 .*API key not valid") as caught:
        refresh_catalog("gcp", tmp_path / "p.json", ["us-central1"], api_key="s3cret", url=url)
    assert "s3cret" not in str(caught.value)
    api.close()  # nothing listens there now: a network failure
    with pytest.raises(CloudApiError, match=r"cannot reach .*connection refused") as caught:
        refresh_catalog("gcp", tmp_path / "p.json", ["us-central1"], api_key="s3cret", url=url)
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)


def test_gcp_bad_sku_shape_is_one_line(tmp_path: Path, serve: Callable[[Handler], FakeApi]) -> None:
    broken = gcp_sku("G2 Instance Core running in Americas", "OnDemand", 0.02, ["us-central1"])
    broken["pricingInfo"] = []
    api = serve(lambda path, query: (200, {"skus": [broken], "nextPageToken": ""}))
    with pytest.raises(CloudApiError, match="unexpected SKU X: no pricingInfo unit price"):
        refresh_catalog("gcp", tmp_path / "p.json", ["us-central1"], api_key="k", url=api.url)


def test_refresh_command_writes_out_and_refuses_without_a_key(
    tmp_path: Path, serve: Callable[[Handler], FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.delenv("HEDGEFORM_GCP_API_KEY", raising=False)
    result = runner.invoke(
        main, ["prices", "refresh", "--cloud", "gcp", "--out", str(tmp_path / "x.json")]
    )
    assert result.exit_code == 1
    assert "needs an API key: set HEDGEFORM_GCP_API_KEY" in result.output
    assert not (tmp_path / "x.json").exists()
    result = runner.invoke(main, ["prices", "refresh", "--cloud", "azure", "--region", "mars"])
    assert result.exit_code == 1 and "--region mars: not a azure region" in result.output
    api = serve(gcp_handler)
    monkeypatch.setenv("MY_KEY", "k3y")
    out = tmp_path / "x.json"
    before = CATALOG_PATH.read_bytes()
    result = runner.invoke(
        main,
        ["prices", "refresh", "--cloud", "gcp", "--api-key-env", "MY_KEY", "--region",
         "us-central1", "--out", str(out), "--endpoint-url", api.url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == f"{out}: 5 gcp entries refreshed, 2 kept as they were\n"
    assert CATALOG_PATH.read_bytes() == before  # --out: the shipped catalog stays
    assert (
        "g2-standard-24" in json.loads(out.read_text())["clouds"]["gcp"]["regions"]["us-central1"]
    )
