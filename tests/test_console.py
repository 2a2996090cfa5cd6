"""The "Test campaign" console of ``rankcore serve`` (``GET /console``).

The routes and the ``--console``/``--no-console``/``--auth sigv4`` switches are checked in
process. The page itself is driven in a real headless Chromium with selenium against ``rankcore
serve`` as a subprocess: a filled form, a link that runs on load, an error and (once the server
serves GetRecommendations) a promotion. Every table is compared with ``rankcore.Client`` for the
same request. The browser tests skip only when no Chromium and chromedriver can be found (CI
installs Debian's ``chromium`` and ``chromium-driver``). Each state is saved as a screenshot in
``$RANKCORE_CONSOLE_SCREENSHOTS`` (a temporary folder when unset) for a person to look at.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from rankcore import Campaign, Client
from rankcore.cli.serving import configure_serve_parser
from rankcore.datasets import synthetic
from rankcore.model import load_model
from rankcore.serve.config import console_enabled, settings_from_args
from rankcore.serve.main import app_from_settings
from test_server import ARN, FILTER_ARN, FILTER_EXPR, SIZES, run_server

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_FILES = ("index.html", "console.css", "console.js")
WAIT = 30  # seconds a page may take to answer (a bound on a hang, not a timing assertion)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "demo"
    synthetic(**SIZES, seed=0).save(path)
    return path


@pytest.fixture(scope="module")
def local(model_dir):
    """The in-process reference: a Client over the same model directory and filter."""
    campaign = Campaign(load_model(model_dir), name="demo")
    campaign.create_filter("genre", FILTER_EXPR)
    return Client([campaign])


class _InProcess:
    """GET requests to an app in this process (httpx over ASGI, no socket)."""

    def __init__(self, app):
        self.app = app

    def get(self, path: str) -> httpx.Response:
        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                         base_url="http://t") as c:
                return await c.get(path)
        return asyncio.run(go())


def _app(model_dir, *flags) -> _InProcess:
    """The app ``rankcore serve --campaign demo=DIR FLAGS`` builds, and a client over it."""
    parser = argparse.ArgumentParser()
    configure_serve_parser(parser)
    args = parser.parse_args(["--campaign", f"demo={model_dir}", "--filter", f"genre={FILTER_EXPR}",
                              "--no-reload", *flags])
    return _InProcess(app_from_settings(settings_from_args(args)))


# --------------------------------------------------------------------------- routes, no browser
def test_console_routes(model_dir):
    client = _app(model_dir)
    page = client.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ("console.css", "console.js"):
        assert f'"console/{name}"' in page.text
        r = client.get(f"/console/{name}")
        assert r.status_code == 200 and r.content
    assert client.get("/console/console.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/console/console.css").headers["content-type"].startswith("text/css")
    listed = client.get("/console/campaigns").json()["campaigns"]
    assert [c["name"] for c in listed] == ["demo"] and listed[0]["arn"] == ARN
    assert listed[0]["filters"] == [{"name": "genre", "arn": FILTER_ARN, "expression": FILTER_EXPR,
                                     "placeholders": ["GENRE"]}]
    assert set(listed[0]["context"]["DEVICE"]) >= {"desktop", "mobile phone"}
    assert {"GENRE", "PRICE"} <= set(listed[0]["itemColumns"])
    # nothing else under /console, and the page fetches nothing from another host
    assert client.get("/console/other.js").status_code == 404
    assert "http" not in page.text.replace("http-equiv", "")


@pytest.mark.parametrize("flags, served", [
    ((), True),
    (("--no-console",), False),
    (("--auth", "sigv4"), False),
    (("--auth", "sigv4", "--console"), True),
    (("--auth", "sigv4", "--no-console"), False),
])
def test_console_switches(model_dir, tmp_path, flags, served):
    if "sigv4" in flags:
        creds = tmp_path / "creds.json"
        creds.write_text(json.dumps({"AKID": "secret"}))
        flags = (*flags, "--credentials", str(creds))
    client = _app(model_dir, *flags)
    for path in ("/console", "/console/campaigns", "/console/console.js"):
        r = client.get(path)
        assert r.status_code == (200 if served else 404), path
        if not served:
            assert r.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert client.get("/ping").status_code == 200


def test_console_setting_from_config_file(tmp_path):
    assert console_enabled({"auth": "none", "console": None})
    assert not console_enabled({"auth": "sigv4", "console": None})
    assert console_enabled({"auth": "sigv4", "console": True})
    with pytest.raises(ValueError, match="console must be true or false"):
        console_enabled({"auth": "none", "console": "yes"})


def test_console_and_no_console_conflict():
    parser = argparse.ArgumentParser()
    configure_serve_parser(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--console", "--no-console"])


def test_console_files_are_package_data():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["rankcore.serve.console"]
    folder = ROOT / "src" / "rankcore" / "serve" / "console"
    for name in CONSOLE_FILES:
        assert (folder / name).is_file()
        assert any(Path(name).match(pattern) for pattern in data), name


# --------------------------------------------------------------------------- the page in Chromium
def _find_browser():
    """``(chromium, chromedriver)`` paths, or a reason why there are none."""
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome",
                                                  "google-chrome-stable")) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None, ("no Chromium and chromedriver found (install Debian's chromium and "
                      "chromium-driver: .ci/run does)")
    return (browser, driver), None


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = os.environ.get("RANKCORE_CONSOLE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser():
    found, reason = _find_browser()
    if found is None:
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service  # lazy: selenium is a test-only extra
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(model_dir):
    with run_server("--campaign", f"demo={model_dir}", "--filter", f"genre={FILTER_EXPR}",
                    "--no-reload") as proc:
        yield proc


@pytest.fixture(scope="module")
def recommendations_served(server):
    """Skip unless the server answers GetRecommendations (it says "not available" otherwise)."""
    r = httpx.post(server.url + "/recommendations", json={"campaignArn": ARN, "userId": "12"})
    if r.status_code != 200 and "not available" in r.json().get("message", ""):
        pytest.skip(f"this server does not serve GetRecommendations yet: {r.json()['message']}")


def _open(driver, url: str, runs: int | None = None) -> None:
    """Load ``url`` and wait until the page has listed the campaigns (and made ``runs`` runs)."""
    from selenium.webdriver.support.ui import WebDriverWait  # lazy: selenium is test-only
    driver.set_window_size(1280, 900)
    driver.get(url)
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.body.dataset.state") in ("idle", "done", "error"))
    if runs is not None:
        _wait_runs(driver, runs)


def _wait_runs(driver, runs: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait  # lazy: selenium is test-only
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return Number(document.body.dataset.runs || 0)") >= runs)


def _shot(driver, folder: Path, name: str, width: int = 1280) -> Path:
    """A screenshot of the whole page at ``width`` pixels (the window grown to the page height)."""
    driver.set_window_size(width, 900)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height + 120, 600), 6000))
    driver.execute_script("window.scrollTo(0, 0)")
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    return path


def _rows(driver) -> list:
    """The result table: ``[{itemId, score, unknown, promotion, cells}]`` from its row attributes."""
    out = []
    for tr in driver.find_elements("css selector", "#result-table tbody tr"):
        score = tr.get_attribute("data-score")
        out.append({"itemId": tr.get_attribute("data-item-id"),
                    "score": float(score) if score else None,
                    "unknown": tr.get_attribute("data-unknown") == "true",
                    "promotion": tr.get_attribute("data-promotion"),
                    "cells": [td.text for td in tr.find_elements("css selector", "td")]})
    return out


def _expected(items: list) -> list:
    return [(x["itemId"], x.get("score"), x.get("promotionName")) for x in items]


def _seen(rows: list) -> list:
    return [(r["itemId"], r["score"], r["promotion"]) for r in rows]


def _fill(driver, element_id: str, text: str) -> None:
    el = driver.find_element("id", element_id)
    el.clear()
    el.send_keys(text)


def test_ranking_form(browser, server, local, screenshots):
    from selenium.webdriver.common.keys import Keys  # lazy: selenium is test-only
    from selenium.webdriver.support.ui import Select
    _open(browser, server.url + "/console")
    assert browser.find_element("id", "campaign").get_attribute("value") == ARN
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter((e) => !e.labels || !e.labels.length).map((e) => e.id || e.outerHTML)")
    assert unlabelled == []
    _fill(browser, "rk-items", "0, 1, 2, 3, 4\n5\n6,7,8,9, 10\n11\n12\n13,14,15,16,17,18,19\nnope")
    browser.find_element("css selector", "#rk-context .add-row").click()
    browser.find_element("css selector", "#rk-context .kv-key").send_keys("DEVICE")
    browser.find_element("css selector", "#rk-context .kv-value").send_keys("mobile phone")
    Select(browser.find_element("id", "rk-filter")).select_by_value("genre")
    _fill(browser, "rk-filter-values-GENRE", '"Action","Drama","Comedy"')
    for col in ("GENRE", "PRICE"):
        browser.find_element("id", f"rk-columns-{col}").click()
    _fill(browser, "rk-user", "12")
    browser.find_element("id", "rk-user").send_keys(Keys.ENTER)  # the keyboard submits the form
    _wait_runs(browser, 1)
    _shot(browser, screenshots, "ranking-form")

    req = dict(campaignArn=ARN, userId="12", inputList=[str(i) for i in range(20)] + ["nope"],
               context={"DEVICE": "mobile phone"}, filterArn=FILTER_ARN,
               filterValues={"GENRE": '"Action","Drama","Comedy"'},
               metadataColumns={"ITEMS": ["GENRE", "PRICE"]})
    want = local.get_personalized_ranking(**req)["personalizedRanking"]
    assert browser.execute_script("return document.body.dataset.state") == "done"
    rows = _rows(browser)
    assert _seen(rows) == _expected(want)
    assert len(rows) >= 2  # the filter left something to compare
    for row, item in zip(rows, want):
        assert row["unknown"] == ("score" not in item)
        assert row["cells"][0] == str(rows.index(row) + 1)
        if "metadata" in item:
            assert row["cells"][-2:] == [item["metadata"]["GENRE"], item["metadata"]["PRICE"]]
    assert browser.find_element("id", "recommendation-id").text.startswith("RID-")
    # the state went into the URL: a link to this result
    query = parse_qs(urlsplit(browser.current_url).query)
    assert query["campaign"] == ["demo"] and query["userId"] == ["12"]
    assert query["inputList"] == [",".join(req["inputList"])] and query["context"] == ["DEVICE:mobile phone"]
    assert query["filter"] == ["genre"] and query["filterValues"] == ['GENRE:"Action","Drama","Comedy"']


def test_link_runs_on_load(browser, server, local, screenshots):
    query = [("campaign", "demo"), ("tab", "ranking"), ("userId", "12"),
             ("inputList", "3,4,10,8,nope,12,7"), ("context", "DEVICE:mobile phone"),
             ("metadataColumns", "GENRE")]
    _open(browser, server.url + "/console?" + urlencode(query), runs=1)
    _shot(browser, screenshots, "link-on-load")
    req = dict(campaignArn=ARN, userId="12", inputList=["3", "4", "10", "8", "nope", "12", "7"],
               context={"DEVICE": "mobile phone"}, metadataColumns={"ITEMS": ["GENRE"]})
    want = local.get_personalized_ranking(**req)["personalizedRanking"]
    rows = _rows(browser)
    assert _seen(rows) == _expected(want)
    unknown = [r for r in rows if r["unknown"]]
    assert [r["itemId"] for r in unknown] == ["nope"] and "unknown item" in unknown[0]["cells"][1]
    # the form shows the query it ran
    assert browser.find_element("id", "rk-user").get_attribute("value") == "12"
    assert browser.find_element("css selector", "#rk-context .kv-value").get_attribute("value") == "mobile phone"
    # a phone's width: the page fits, the table scrolls inside its own box
    browser.set_window_size(390, 844)
    _shot(browser, screenshots, "link-on-load-phone", width=390)
    assert _overflow(browser) <= 0
    browser.find_element("id", "tab-recommendations").click()
    assert _overflow(browser) <= 0
    _shot(browser, screenshots, "recommendations-form-phone", width=390)


def _overflow(driver) -> int:
    """Pixels the page is wider than the window (a table may scroll inside its own box)."""
    return driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")


@pytest.mark.parametrize("case, query, body", [
    ("unknown-campaign",
     [("campaign", "nosuch"), ("userId", "12"), ("inputList", "3,4")],
     {"campaignArn": ARN.replace("/demo", "/nosuch"), "userId": "12", "inputList": ["3", "4"]}),
    ("bad-context",
     [("campaign", "demo"), ("userId", "12"), ("inputList", "3,4"), ("context", "WEATHER:rain")],
     {"campaignArn": ARN, "userId": "12", "inputList": ["3", "4"], "context": {"WEATHER": "rain"}}),
])
def test_error_shown(browser, server, screenshots, case, query, body):
    _open(browser, server.url + "/console?" + urlencode(query), runs=1)
    _shot(browser, screenshots, f"error-{case}")
    answer = httpx.post(server.url + "/personalize-ranking", json=body)
    assert answer.status_code >= 400
    assert browser.execute_script("return document.body.dataset.state") == "error"
    assert browser.find_element("id", "error").is_displayed()
    assert not browser.find_element("id", "result").is_displayed()
    assert browser.find_element("id", "error-type").text == answer.headers["x-amzn-ErrorType"]
    assert browser.find_element("id", "error-message").text == answer.json()["message"]
    assert browser.find_element("id", "error-status").text == f"HTTP {answer.status_code}"


def test_recommendations_error_shown(browser, server, screenshots):
    """Neither a user nor an item: whatever the server answers, the page shows its error."""
    _open(browser, server.url + "/console?campaign=demo&tab=recommendations")
    browser.find_element("id", "tab-recommendations").click()
    browser.find_element("css selector", "#recommendations-form button[type=submit]").click()
    _wait_runs(browser, 1)
    _shot(browser, screenshots, "recommendations-error")
    answer = httpx.post(server.url + "/recommendations", json={"campaignArn": ARN, "numResults": 25})
    assert answer.status_code >= 400
    assert browser.find_element("id", "error-type").text == answer.headers["x-amzn-ErrorType"]
    assert browser.find_element("id", "error-message").text == answer.json()["message"]


def test_recommendations_with_promotion(browser, server, local, screenshots, recommendations_served):
    from selenium.webdriver.support.ui import Select  # lazy: selenium is test-only
    _open(browser, server.url + "/console")
    browser.find_element("id", "tab-recommendations").click()
    _fill(browser, "rc-user", "12")
    _fill(browser, "rc-num", "12")
    _fill(browser, "rc-promo-name", "action")
    _fill(browser, "rc-promo-percent", "50")
    Select(browser.find_element("id", "rc-promo-filter")).select_by_value("genre")
    _fill(browser, "rc-promo-values-GENRE", '"Action"')
    browser.find_element("id", "rc-columns-GENRE").click()
    browser.find_element("css selector", "#recommendations-form button[type=submit]").click()
    _wait_runs(browser, 1)
    _shot(browser, screenshots, "recommendations-promotion")
    req = dict(campaignArn=ARN, userId="12", numResults=12,
               promotions=[{"name": "action", "percentPromotedItems": 50, "filterArn": FILTER_ARN,
                            "filterValues": {"GENRE": '"Action"'}}],
               metadataColumns={"ITEMS": ["GENRE"]})
    want = _by_promotion(_expected(local.get_recommendations(**req)["itemList"]))
    rows = _rows(browser)
    assert browser.execute_script("return document.body.dataset.state") == "done"
    assert len(rows) == 12 and _by_promotion(_seen(rows)) == want
    assert want["action"]  # something was promoted, and the page marks those rows
    assert all("action" in r["cells"][3] for r in rows if r["promotion"] == "action")
    query = parse_qs(urlsplit(browser.current_url).query)
    assert query["tab"] == ["recommendations"] and query["promotionName"] == ["action"]
    # the same link, opened afresh, runs it again with the same items
    _open(browser, browser.current_url, runs=1)
    assert _by_promotion(_seen(_rows(browser))) == want


def _by_promotion(items: list) -> dict:
    """Promotion name (None: not promoted) -> its items in order. The positions of promoted items
    are drawn per recommendation ID, so two answers to one request agree on these lists only."""
    out: dict = {}
    for item in items:
        out.setdefault(item[2], []).append(item)
    return out
