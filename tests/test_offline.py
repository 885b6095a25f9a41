"""Offline, a hub model id or a hub dataset fails with one line at once: no retries with back-off.

The suite sets HF_HUB_OFFLINE=1 (conftest); these tests take it away, as for a user whose machine
simply has no network, so evalkit has to find out by itself that the hub cannot be reached.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers import run_cli


@pytest.fixture
def unreachable_hub(monkeypatch):
    """HF_HUB_OFFLINE unset (restored afterwards); any sleep (huggingface_hub's back-off between retries) fails."""
    import datasets.config
    from huggingface_hub import constants

    from evalkit.hub import hub_offline

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    hub_offline.cache_clear()
    if not hub_offline():
        hub_offline.cache_clear()
        pytest.skip("the Hugging Face hub is reachable from here; this test is for a machine without network")

    def no_retry(seconds):
        raise AssertionError(f"slept {seconds} s: something retried instead of failing at once")

    hub_offline.cache_clear()  # the run under test asks again, as a fresh process would
    monkeypatch.setattr(time, "sleep", no_retry)
    yield
    hub_offline.cache_clear()


@pytest.mark.parametrize("argv, needle", [
    (["--model", "org/some-model", "--tasks", "cmmlu"], "the Hugging Face hub cannot be reached"),
    (["--model", "smollm2-135m-instruct", "--tasks", "xsum"], "xsum: data is not available offline"),
])
def test_offline_hub_fails_at_once_with_one_line(unreachable_hub, capsys, tmp_path, argv, needle):
    started = time.perf_counter()
    code, out, err = run_cli(capsys, "run", *argv, "--output-dir", str(tmp_path / "out"), "--no-store", "--no-progress")
    elapsed = time.perf_counter() - started
    print(f"evalkit run {' '.join(argv)} offline: exit {code} after {elapsed:.2f} s")  # -s shows it
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("evalkit: error: ") and needle in err, err
    assert "Retrying" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("results_*.json"))


def test_cached_or_local_models_are_not_probed(unreachable_hub):
    """Local paths and embedded aliases are never hub ids, so they never wait on the network."""
    from evalkit.models.loader import check_hub_model, is_hub_id

    assert not is_hub_id("smollm2-135m-instruct") and not is_hub_id("./org/model") and is_hub_id("org/some-model")
    check_hub_model("smollm2-135m-instruct")  # no error, no request
