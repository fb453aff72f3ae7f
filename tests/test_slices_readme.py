"""README's "Slices" section, run as written against real servers (two uvicorn processes on
Redis): its curl lines (the answers it shows must be the service's, and Keras' over exactly
each slice's samples) and its Python example with tally_client (executed from the README's
own text, with data of ours), against Keras per slice."""

from __future__ import annotations

import json
import random
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.oracle import assert_close, json_array, keras_metric, keras_update

README = Path(__file__).resolve().parent.parent / "README.md"
NAME = "shop.val.auc"  # the README's session name; the tests use a fresh one in its place
ADDRESS = "localhost:8000"


def section() -> str:
    text = README.read_text()
    start = text.index("\n## Slices")
    return text[start:text.index("\n## ", start + 1)]


def block(language: str) -> str:
    (code,) = re.findall(rf"```{language}\n(.*?)```", section(), flags=re.S)
    return code


def curl_commands(code: str) -> list[tuple[list[str], list[str]]]:
    """Each curl command's arguments, with the `# ...` lines that follow it (what it shows
    the service answering)."""
    commands: list[tuple[list[str], list[str]]] = []
    pending = ""
    for line in code.splitlines():
        if not pending and line.startswith("#"):
            commands[-1][1].append(line[1:].strip())
            continue
        pending += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            words = shlex.split(pending.replace("\\\n", " "), comments=True)
        except ValueError:  # a quote still open: the body goes on on the next line
            continue
        commands.append((words, []))
        pending = ""
    assert not pending, pending
    return commands


def request_of(words: list[str]) -> tuple[str, str, Any]:
    assert words[0] == "curl"
    method, url, body = "GET", "", None
    rest = iter(words[1:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            assert next(rest) == "Content-Type: application/json"
        elif word == "-d":
            body = json.loads(next(rest))
            method = "POST" if method == "GET" else method
        else:
            url = word
    assert url.startswith(ADDRESS), url
    return method, url[len(ADDRESS):], body


def same_document(answer: Any, shown: Any, where: str) -> None:
    """The README's answer and the service's: equal keys and strings, numbers as floats."""
    if isinstance(shown, dict):
        assert isinstance(answer, dict) and set(answer) == set(shown), (where, answer, shown)
        for key in shown:
            same_document(answer[key], shown[key], f"{where}.{key}")
    elif isinstance(shown, (int, float)) and not isinstance(shown, bool):
        assert answer == pytest.approx(shown, rel=1e-6), (where, answer, shown)
    else:
        assert answer == shown, (where, answer, shown)


class Oracle:
    """Keras over every sample, and over each slice's samples only."""

    def __init__(self, metric: str, config: dict[str, Any]) -> None:
        self.make = lambda: keras_metric(metric, config)
        self.overall = self.make()
        self.slices: dict[str, Any] = {}

    def update(self, y_true: Any, y_pred: Any, slices: Any = None, slice: Any = None) -> None:
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        keras_update(self.overall, {"y_true": y_true, "y_pred": y_pred})
        if slice is not None:
            slices = [slice] * len(y_true)
        if slices is None:
            return
        labels = np.array([str(v) for v in list(slices)])
        for value in dict.fromkeys(labels.tolist()):
            chosen = labels == value
            if value not in self.slices:
                self.slices[value] = self.make()
            keras_update(self.slices[value], {"y_true": y_true[chosen],
                                              "y_pred": y_pred[chosen]})

    def result(self, value: str | None = None) -> np.ndarray:
        metric = self.overall if value is None else self.slices[value]
        return np.asarray(metric.result())


def test_the_readme_curl_lines_and_the_answers_they_show(live_servers):
    name = f"{NAME}.{random.randrange(10**9)}"
    commands = curl_commands(block("bash").replace(NAME, name))
    assert [request_of(words)[0] for words, _ in commands] == ["PUT", "POST", "POST", "GET",
                                                               "GET", "GET"]
    oracle: Oracle | None = None
    with httpx.Client(base_url=live_servers[0], timeout=30) as http:
        for words, shown in commands:
            method, path, body = request_of(words)
            answer = http.request(method, path, json=body)
            assert answer.is_success, (path, answer.text)
            if method == "PUT":
                assert answer.json()["slices"] == body["slices"]
                oracle = Oracle(body["metric"], body["config"])
            elif method == "POST":
                assert oracle is not None
                oracle.update(body["y_true"], body["y_pred"], body.get("slices"),
                              body.get("slice"))
            else:
                assert oracle is not None and len(shown) == 1, (path, shown)
                document = answer.json()
                same_document(document, json.loads(shown[0]), path)
                if path.endswith("/slices"):
                    assert set(document["slices"]) == set(oracle.slices)
                    for value, result in document["slices"].items():
                        assert_close(json_array(result), oracle.result(value), value)
                else:
                    assert_close(json_array(document["result"]),
                                 oracle.result(document.get("slice")), path)
        assert http.delete(f"/v1/sessions/{name}").status_code == 204


def test_the_readme_python_example_with_the_client(live_servers):
    name = f"{NAME}.{random.randrange(10**9)}"
    code = block("python").replace(NAME, name).replace(f"http://{ADDRESS}", live_servers[0])
    rng = np.random.default_rng(31)
    countries = np.array(["fr", "de", "it", "es"])
    batches = []
    for size in (100, 3000, 50):  # 3000 samples: 6000 numbers, sent as .npz
        y_true = rng.integers(0, 2, size).astype(np.float32)
        y_pred = rng.uniform(size=size).astype(np.float32)
        country = countries[rng.integers(0, len(countries), size)]
        batches.append((y_true, y_pred, country if size != 50 else country.tolist()))
    oracle = Oracle("AUC", {"num_thresholds": 200})
    for y_true, y_pred, country in batches:
        oracle.update(y_true, y_pred, country)

    namespace: dict[str, Any] = {"validation_batches": lambda: iter(batches)}
    exec(compile(code, "README.md (Slices)", "exec"), namespace)  # noqa: S102 - our README

    assert_close(json_array(namespace["overall"]), oracle.result(), "overall")
    assert_close(json_array(namespace["france"]), oracle.result("fr"), "fr")
    per_country = namespace["per_country"]
    assert set(per_country) == set(countries)
    for value, result in per_country.items():
        assert_close(json_array(result), oracle.result(value), value)
    closed = namespace["closed"]
    assert closed["epoch"] == 0
    assert_close(json_array(closed["result"]), oracle.result(), "closed overall")
    assert set(closed["slices"]) == set(countries)
    for value, result in closed["slices"].items():
        assert_close(json_array(result), oracle.result(value), f"closed {value}")
    httpx.delete(f"{live_servers[0]}/v1/sessions/{name}", timeout=30).raise_for_status()
