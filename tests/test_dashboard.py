"""The dashboard (`GET /`): how it is served (in process), and what a person sees in a real
headless Chromium on a real uvicorn: the page loads without a console error, a session created
through the API appears in its group, an update changes the number shown, a reset adds a point
to the chart, a token pasted into the page is used, errors show the problem's `detail`,
polling stops while the tab is hidden, and a sliced session lists each slice's result (as text)."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api import dashboard
from app.api.app import create_app
from app.settings import Settings
from app.store.memory import MemoryStore
from tests.browser import (
    MISSING,
    chromium_paths,
    console_errors,
    served,
    start_chromium,
    wait_for,
)

README_BATCHES = [  # the README's Precision example: 0.8 after the first batch, 0.5 after both
    {"y_true": [0, 1, 1, 1, 0, 1, 0, 1], "y_pred": [1, 1, 0, 1, 0, 1, 0, 1]},
    {"y_true": [0, 1, 0, 0, 1, 0, 1, 1], "y_pred": [1, 0, 1, 1, 0, 0, 0, 0]},
]
TOKEN = "dash-reader"


# ---- how the page is served ----------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(), store=MemoryStore())) as c:
        yield c


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/dashboard/[^"]+)"', html)


def test_the_page_is_html_revalidated_and_locked_to_its_origin(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    again = client.get("/", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_every_asset_the_page_names_is_served_with_its_type_for_a_year(client):
    urls = asset_urls(client.get("/").text)
    assert {url.split("?")[0] for url in urls} == {
        f"/dashboard/{name}" for name in dashboard.ASSET_TYPES}
    for url in urls:
        response = client.get(url)
        name = url.split("?")[0].removeprefix("/dashboard/")
        assert response.status_code == 200, url
        assert response.headers["content-type"] == dashboard.ASSET_TYPES[name]
        assert response.headers["cache-control"] == dashboard.IMMUTABLE
        assert response.content == dashboard.assets()[name].body


def test_an_asset_without_its_current_digest_is_revalidated(client):
    response = client.get("/dashboard/dashboard.js?v=an-old-release")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["etag"] == dashboard.assets()["dashboard.js"].etag


def test_an_unknown_asset_is_a_problem_404(client):
    response = client.get("/dashboard/index.html")  # the template is not an asset
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "no dashboard asset" in response.json()["detail"]


def test_nothing_is_loaded_from_another_origin():
    """Air-gapped clusters: no URL with a host in the page, its script or its style sheet
    (the SVG namespace is a name, never fetched)."""
    for name in (dashboard.PAGE, *dashboard.ASSET_TYPES):
        text = (dashboard.resources.files("app") / "static" / name).read_text()
        hosts = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text)) - {"http://www.w3.org"}
        assert not hosts, (name, hosts)


def test_the_schema_documents_the_page_as_html(client):
    operation = client.get("/openapi.json").json()["paths"]["/"]["get"]
    assert "text/html" in operation["responses"]["200"]["content"]
    assert not any(path.startswith("/dashboard") for path in client.get("/openapi.json").json()[
        "paths"])


# ---- in a real browser ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if chromium_paths() is None:
        pytest.skip(MISSING)
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server():
    with served() as url:
        yield url


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


@pytest.fixture
def page(browser, server):
    """The dashboard freshly opened, live, with the console read empty before the test."""
    browser.get(f"{server}/")
    wait_for(browser, lambda d: status_of(d) == "live", "the page's first listing")
    console_errors(browser)
    return browser


def status_of(driver) -> str:
    return driver.execute_script("return document.getElementById('status').dataset.state")


def shown(driver, css: str, child: str = "") -> str | None:
    """The text of the element `css` (or of its `child`), read in one script: the page may
    rebuild its rows between two WebDriver calls."""
    return driver.execute_script(
        "const node = document.querySelector(arguments[0]);"
        "const part = node && arguments[1] ? node.querySelector(arguments[1]) : node;"
        "return part ? part.textContent.trim() : null;", css, child)


def row(name: str) -> str:
    return f'a.row.session[data-session="{name}"]'


def create(api, name: str, metric: str = "Precision") -> None:
    api.put(f"/v1/sessions/{name}", json={"metric": metric}).raise_for_status()


def test_the_page_loads_without_console_errors(page):
    assert page.title == "Tally"
    assert shown(page, "#status").startswith("live")
    assert console_errors(page) == []


def test_a_session_created_through_the_api_appears_in_its_group(page, api):
    create(api, "appear.val.precision")
    wait_for(page, lambda d: shown(d, row("appear.val.precision")), "the new session's row")
    nested = page.execute_script(
        "return document.querySelector(arguments[0]).closest('details').dataset.group + '<' +"
        " document.querySelector(arguments[0]).closest('details').parentElement"
        "   .closest('details').dataset.group", row("appear.val.precision"))
    assert nested == "appear.val<appear"
    assert shown(page, row("appear.val.precision"), ".leaf") == "precision"
    assert shown(page, row("appear.val.precision"), ".metric") == "Precision"
    assert shown(page, row("appear.val.precision"), ".epoch") == "0"
    assert shown(page, row("appear.val.precision"), ".seen") == "just now" or re.fullmatch(
        r"\d+ s ago", shown(page, row("appear.val.precision"), ".seen") or "")
    assert console_errors(page) == []


def test_an_update_changes_the_number_shown(page, api):
    name = "numbers.val.precision"
    create(api, name)
    wait_for(page, lambda d: shown(d, row(name), ".result") == "0", "precision 0 before data")
    for batch, expected in zip(README_BATCHES, ("0.8", "0.5"), strict=True):
        api.post(f"/v1/sessions/{name}/update", json=batch).raise_for_status()
        wait_for(page, lambda d, e=expected: shown(d, row(name), ".result") == e,
                 f"the result {expected}")
    assert console_errors(page) == []


def test_a_reset_adds_a_point_to_the_chart(page, api):
    name = "chart.val.precision"
    create(api, name)
    api.post(f"/v1/sessions/{name}/update", json=README_BATCHES[0]).raise_for_status()
    wait_for(page, lambda d: shown(d, row(name)), "the session's row")
    page.find_element("css selector", row(name)).click()
    wait_for(page, lambda d: shown(d, "#detail-name") == name, "the session view")
    wait_for(page, lambda d: d.find_elements("css selector", "svg.chart circle.open"),
             "the open epoch's point")
    assert closed_points(page) == []
    assert variable_rows(page) == [["true_positives", "[1]", "float32", "4"],
                                   ["false_positives", "[1]", "float32", "1"]]
    for epoch, result in enumerate((0.8, 0.0)):
        api.post(f"/v1/sessions/{name}/reset").raise_for_status()
        wait_for(page, lambda d, n=epoch + 1: len(closed_points(d)) == n,
                 f"{epoch + 1} closed epochs on the chart")
        assert closed_points(page)[-1].endswith(f"epoch {epoch}: {result:g}")
    assert shown(page, "#detail-facts", "dd") == "Precision"
    wait_for(page, lambda d: [r[3] for r in variable_rows(d)] == ["0", "0"], "zeroed variables")
    assert json.loads(shown(page, "#config"))["thresholds"] is None
    assert console_errors(page) == []


def variable_rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#variables tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent))")


def closed_points(driver) -> list[str]:
    """The closed epochs on the chart, as their tooltips' first lines."""
    return driver.execute_script(
        "return [...document.querySelectorAll('svg.chart circle.closed title')]"
        ".map(t => t.textContent.split(' (closed')[0])")


def test_a_tensor_result_is_shown_compactly(page, api):
    name = "tensor.val.f1"
    create(api, name, "F1Score")
    batch = {"y_true": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
             "y_pred": [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.1, 0.3]]}
    api.post(f"/v1/sessions/{name}/update", json=batch).raise_for_status()
    expected = api.get(f"/v1/sessions/{name}/result").json()["result"]
    shown_text = wait_for(page, lambda d: shown(d, row(name), ".result"), "the F1 row")
    assert shown_text == f"[{expected[0]:.3g}, {expected[1]:.3g}, …]"
    assert console_errors(page) == []


def test_an_error_shows_the_problem_detail(page, api):
    detail = api.get("/v1/sessions/no.such.session").json()["detail"]
    page.execute_script("location.hash = '#/s/no.such.session'")
    wait_for(page, lambda d: shown(d, "#detail-error") == f"404: {detail}", "the 404's detail")


def test_polling_stops_while_the_tab_is_hidden_and_resumes(page, api):
    page.execute_script(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));")
    wait_for(page, lambda d: not d.execute_script("return tallyDashboard.polling()"),
             "no poll scheduled or under way")
    assert status_of(page) == "paused"
    polls = page.execute_script("return tallyDashboard.polls()")
    create(api, "hidden.val.precision")
    page.execute_script(
        "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));")
    wait_for(page, lambda d: shown(d, row("hidden.val.precision")), "the session made meanwhile")
    assert page.execute_script("return tallyDashboard.polls()") > polls
    assert status_of(page) == "live"


@pytest.fixture(scope="module")
def guarded_server():
    tokens = {TOKEN: {"scopes": ["read"]}, "dash-writer": {"scopes": ["write"]}}
    with served({"TALLY_TOKENS": json.dumps(tokens)}) as url:
        yield url


def test_a_pasted_token_is_kept_in_the_tab_and_used(browser, guarded_server):
    with httpx.Client(base_url=guarded_server, timeout=30,
                      headers={"Authorization": "Bearer dash-writer"}) as writer:
        create(writer, "guarded.val.precision")
    refused = httpx.get(f"{guarded_server}/v1/sessions", timeout=30)
    browser.get(f"{guarded_server}/")
    wait_for(browser, lambda d: status_of(d) == "error", "the 401")
    assert shown(browser, "#error").startswith(f"401: {refused.json()['detail']}")
    browser.find_element("id", "token").send_keys(TOKEN)
    browser.find_element("css selector", "#token-form button[type=submit]").click()
    wait_for(browser, lambda d: shown(d, row("guarded.val.precision")), "the guarded session")
    assert browser.execute_script("return sessionStorage.getItem('tally.token')") == TOKEN
    assert browser.execute_script("return document.getElementById('error').hidden")
    browser.find_element("id", "token-forget").click()
    wait_for(browser, lambda d: status_of(d) == "error", "the 401 once the token is forgotten")
    assert browser.execute_script("return sessionStorage.getItem('tally.token')") is None


# ---- slices ----------------------------------------------------------------------------------

HTML_VALUE = "<img src=x onerror=alert(1)>"
SLICED_BATCHES = [  # Precision per slice; the integers come last to check the server's order
    {"y_true": [1, 1, 0, 1, 0, 1, 1, 0], "y_pred": [1, 1, 1, 1, 1, 1, 0, 0],
     "slices": ["eu", "us", "eu", "eu", "us", HTML_VALUE, "us", "eu"]},
    {"y_true": [0, 1, 1, 0, 1, 0, 0], "y_pred": [1, 1, 1, 0, 1, 1, 1],
     "slices": ["us", "eu", 10, 10, 2, 2, "us"]},
]


def precision_by_slice(batches) -> list[list[str]]:
    """Each slice value (in order of first appearance) with its precision, TP / (TP + FP) over
    its samples (0 with no predicted positive, as Keras), printed as the page prints it."""
    counts: dict[str, list[int]] = {}
    for batch in batches:
        for truth, predicted, value in zip(batch["y_true"], batch["y_pred"], batch["slices"],
                                           strict=True):
            positives = counts.setdefault(str(value), [0, 0])
            if predicted:
                positives[0 if truth else 1] += 1
    return [[value, f"{tp / (tp + fp) if tp + fp else 0:.6g}"]
            for value, (tp, fp) in counts.items()]


def slice_rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#slices-rows tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent))")


def create_sliced(api, name: str, body: dict, most: int) -> None:
    api.put(f"/v1/sessions/{name}", json={**body, "slices": {"max": most}}).raise_for_status()


def open_view(driver, name: str) -> None:
    driver.execute_script("location.hash = arguments[0]", f"#/s/{name}")
    wait_for(driver, lambda d: shown(d, "#detail-name") == name, "the session view")


def test_a_sliced_session_shows_each_slice_result_as_text(page, api):
    name = "sliced.val.precision"
    create_sliced(api, name, {"metric": "Precision"}, 100)
    api.post(f"/v1/sessions/{name}/update", json=SLICED_BATCHES[0]).raise_for_status()
    open_view(page, name)
    first = precision_by_slice(SLICED_BATCHES[:1])
    assert first == [["eu", "0.666667"], ["us", "0.5"], [HTML_VALUE, "1"]]
    wait_for(page, lambda d: slice_rows(d) == first, "each slice's precision")
    assert shown(page, "#slices-count") == "(3 of 100 slices)"
    assert shown(page, "#slices-head") == "sliceresult"

    api.post(f"/v1/sessions/{name}/update", json=SLICED_BATCHES[1]).raise_for_status()
    both = precision_by_slice(SLICED_BATCHES)
    assert both[:2] == [["eu", "0.75"], ["us", "0.25"]]  # changed by the second batch
    assert [value for value, _ in both[3:]] == ["10", "2"]  # as they came, not as numbers
    wait_for(page, lambda d: slice_rows(d) == both, "the slices after the second batch")
    assert shown(page, "#slices-count") == "(5 of 100 slices)"

    # The HTML in a slice value is text: no element made of it, no script run, no request.
    assert page.execute_script("return document.querySelectorAll('img').length") == 0
    assert page.execute_script(
        "return [...document.querySelectorAll('#slices-rows td.slice')]"
        ".some(td => td.textContent === arguments[0] && td.children.length === 0)", HTML_VALUE)
    assert console_errors(page) == []


def test_a_sliced_collection_has_a_column_per_member_and_a_filter(page, api):
    name = "sliced.val.both"
    create_sliced(api, name, {"metrics": [{"metric": "Precision"}, {"metric": "Recall"}]}, 4)
    batch = {"y_true": [1, 1, 0, 1, 1, 0], "y_pred": [1, 0, 1, 1, 1, 0],
             "slices": ["north", "north", "north", "south", "south", "east"]}
    api.post(f"/v1/sessions/{name}/update", json=batch).raise_for_status()
    open_view(page, name)
    # By hand: north TP 1 FP 1 FN 1; south TP 2; east no positive at all.
    expected = [["north", "0.5", "0.5"], ["south", "1", "1"], ["east", "0", "0"]]
    wait_for(page, lambda d: slice_rows(d) == expected, "each slice's precision and recall")
    assert page.execute_script(
        "return [...document.querySelectorAll('#slices-head th')].map(th => th.textContent)"
    ) == ["slice", "precision", "recall"]
    assert shown(page, "#slices-count") == "(3 of 4 slices)"
    page.find_element("id", "slices-filter").send_keys("TH")
    wait_for(page, lambda d: slice_rows(d) == expected[:2], "the slices matching 'th'")
    assert shown(page, "#slices-note") == "2 of 3 slices match."
    assert console_errors(page) == []


def test_many_slices_show_the_first_200_and_a_filter_finds_the_others(page, api):
    name = "sliced.val.many"
    create_sliced(api, name, {"metric": "Precision"}, 300)
    values = [f"v{i}" for i in range(250)]
    batch = {"y_true": [i % 2 for i in range(250)], "y_pred": [1] * 250, "slices": values}
    api.post(f"/v1/sessions/{name}/update", json=batch).raise_for_status()
    open_view(page, name)
    wait_for(page, lambda d: shown(d, "#slices-count") == "(250 of 300 slices)", "the count")
    rows = slice_rows(page)
    assert [value for value, _ in rows] == values[:200]
    assert all(result == ("1" if int(value[1:]) % 2 else "0") for value, result in rows)
    assert shown(page, "#slices-note") == (
        "Showing the first 200 of 250 slices: filter them to see others.")
    page.find_element("id", "slices-filter").send_keys("v24")
    wanted = ["v24", *(f"v24{i}" for i in range(10))]
    wait_for(page, lambda d: [v for v, _ in slice_rows(d)] == wanted, "the slices matching v24")
    assert console_errors(page) == []


def test_an_unsliced_session_shows_no_slices_panel(page, api):
    name = "unsliced.val.precision"
    create(api, name)
    open_view(page, name)
    wait_for(page, lambda d: shown(d, "#detail-facts", "dd") == "Precision", "the facts")
    assert page.execute_script("return document.getElementById('slices').hidden")
    assert slice_rows(page) == []
    assert console_errors(page) == []
