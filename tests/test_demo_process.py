"""How the demo's process is laid out: emulators in a child process, the interpreter's garbage
collector kept off what was loaded before the run, and an exit without the teardown."""

from __future__ import annotations

import gc
import json
import multiprocessing
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from voronka.demo import emulators_beside
from voronka.runner import loaded_objects_frozen

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(),
    reason="the demo serves from a forked child only where the platform forks",
)


def _children() -> list[str]:
    return [p.name for p in multiprocessing.active_children()]


def test_the_emulators_serve_from_a_child_that_stops_with_the_demo(tmp_path: Path) -> None:
    imported: list[int] = []
    with emulators_beside(5, 0.05, tmp_path / "files", tmp_path / "truth",
                          meanwhile=lambda: imported.append(1)) as served:
        assert imported == [1]  # the parent's own work ran while the child generated
        assert "voronka-emulators" in _children()
        assert len(served.fingerprint) == 16 and "amoCRM leads" in served.counts
        # the child wrote what the run reads: the shop's order files and the ground truth
        assert list((tmp_path / "files" / "orders").iterdir())
        assert (tmp_path / "truth" / "spend_by_channel_month.csv").exists()
        # and serves the documented API: amoCRM's token endpoint answers a wrong secret
        # with its OAuth error body, from the other process
        url = served.variables["AMOCRM_BASE_URL"] + "/oauth2/access_token"
        body = json.dumps({"client_id": "x", "client_secret": "wrong",
                           "grant_type": "refresh_token", "refresh_token": "r",
                           "redirect_uri": "http://127.0.0.1/"}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code in (400, 401)
    assert "voronka-emulators" not in _children()  # stopped and joined on the way out


def test_a_child_that_cannot_start_is_an_error_not_a_hang(tmp_path: Path) -> None:
    blocked = tmp_path / "files"
    blocked.write_text("a file where the orders folder should go")
    with pytest.raises(RuntimeError, match="emulators did not start"), \
            emulators_beside(5, 0.05, blocked, tmp_path / "truth"):
        pass
    assert "voronka-emulators" not in _children()


def test_what_was_loaded_is_frozen_for_the_run_and_handed_back_after() -> None:
    assert gc.get_freeze_count() == 0
    with loaded_objects_frozen():
        assert gc.get_freeze_count() > 10_000  # every module and definition loaded so far
    assert gc.get_freeze_count() == 0
    with pytest.raises(ValueError), loaded_objects_frozen():
        raise ValueError("a failed run")
    assert gc.get_freeze_count() == 0


def test_the_command_exits_with_its_code_after_flushing_and_running_exit_handlers() -> None:
    script = (
        "import atexit, sys\n"
        "from voronka import cli\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "def command():\n"
        "    sys.stdout.write('unflushed output, ')\n"
        "    return 3\n"
        "cli.main = command\n"
        "cli.run()\n"
        "print('never reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "unflushed output, exit handler ran\n"
    assert done.stderr == ""


def test_a_first_demo_starts_from_scratch_without_saying_the_business_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voronka.demo import demo_data_changed

    monkeypatch.setenv("VORONKA_STATE_DIR", str(tmp_path / "voronka" / "state"))
    assert demo_data_changed("a" * 16) is None  # nothing recorded: not "another business"
    assert demo_data_changed("a" * 16) is False
    assert demo_data_changed("b" * 16) is True
