"""`make lab`'s server: the repository as root, notebooks/ opened, a free port, the real URL."""

import json
import socket
import urllib.request

import pytest

from memrecall.jupyter import serve


def test_free_port_skips_a_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert serve.free_port(taken) != taken
        with pytest.raises(RuntimeError, match="PORT="):
            serve.free_port(taken, tries=1)


def test_lab_command_serves_the_root_on_the_port_and_opens_notebooks(tmp_path):
    command = serve.lab_command(tmp_path, 9123, "secret")
    assert f"--ServerApp.root_dir={tmp_path}" in command
    assert "--ServerApp.port=9123" in command and "--ServerApp.port_retries=0" in command
    assert "--IdentityProvider.token=secret" in command
    assert "--ServerApp.default_url=/lab/tree/notebooks" in command


def test_a_taken_port_is_refused_with_what_to_do(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert serve.main(["--port", str(busy.getsockname()[1])]) == 2
    assert "taken: pass another with PORT=" in capsys.readouterr().err


@pytest.mark.slow
def test_started_lab_answers_at_its_url_and_lists_the_repository(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "figures" / "interactive").mkdir(parents=True)
    server = serve.start_lab(tmp_path, log=tmp_path / "lab.log", first_port=18888)
    try:
        assert server.url == (f"http://127.0.0.1:{server.port}/lab/tree/notebooks"
                              f"?token={server.token}")
        with urllib.request.urlopen(f"{server.base}/api/contents?token={server.token}") as r:
            names = {item["name"] for item in json.load(r)["content"]}
        assert {"notebooks", "figures"} <= names  # the root is the repository, not notebooks/
    finally:
        server.stop()
    assert server.process.poll() is not None
