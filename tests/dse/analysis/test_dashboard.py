"""optuna-dashboard reads a study written by our engine's storage, served on a loopback port."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from wsgiref.simple_server import WSGIServer

from dse.analysis.dashboard import make_dashboard_server
from dse.errors import DSEError
from dse.study.engine import StudyFolder

from ..conftest import RECORDED  # noqa: TID252


@pytest.fixture
def served(recorded_study: StudyFolder) -> Iterator[str]:
    server = make_dashboard_server(recorded_study, host="127.0.0.1", port=0)  # any free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_dashboard_lists_our_study_and_its_trials(served: str) -> None:
    studies = _get(f"{served}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["recorded"]
    detail = _get(f"{served}/api/studies/{studies[0]['study_id']}")
    assert len(detail["trials"]) == len(RECORDED)
    states = sorted(t["state"] for t in detail["trials"])
    assert states == sorted(["Complete"] * (len(RECORDED) - 1) + ["Fail"])
    # optuna-dashboard's front ignores constraints: our feasible front (0, 1, 4) plus infeasible 2
    assert sorted(t["number"] for t in detail["best_trials"]) == [0, 1, 2, 4]


def test_dashboard_is_read_only_by_default(served: str) -> None:
    request = urllib.request.Request(f"{served}/api/studies", method="POST", data=b'{"study_name": "x"}',
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 405
    assert [s["study_name"] for s in _get(f"{served}/api/studies")["study_summaries"]] == ["recorded"]


def test_dashboard_refuses_a_folder_that_is_not_a_study(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(DSEError, match="not a study folder"):
        make_dashboard_server(StudyFolder(tmp_path / "nothing"), host="127.0.0.1", port=0)


def test_dashboard_port_in_use_is_one_line(recorded_study: StudyFolder) -> None:
    first = make_dashboard_server(recorded_study, host="127.0.0.1", port=0)
    try:
        with pytest.raises(DSEError, match=f"cannot listen on 127.0.0.1:{first.server_port}"):
            make_dashboard_server(recorded_study, host="127.0.0.1", port=first.server_port)
    finally:
        first.server_close()
    assert isinstance(first, WSGIServer)
