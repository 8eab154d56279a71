import threading
import time

from contracts.records import Post, Signals
from policies.watch import PolicyWatcher

POLICY = """\
id: live
version: {version}
rules:
  - id: r
    when: {when}
    action: {action}
"""


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_valid_change_swaps_in_and_invalid_change_is_refused(tmp_path):
    path = tmp_path / "live.yaml"
    path.write_text(POLICY.format(version=1, when='text == "x"', action="review"))
    seen_versions: set = set()
    errors: list = []
    stop = threading.Event()

    with PolicyWatcher(tmp_path, debounce_s=0.05) as watcher:

        def serve():  # one "batch" per loop: take current() once, evaluate with it
            while not stop.is_set():
                try:
                    policy = watcher.current().active[0]
                    verdict = policy.evaluate(Post(id="1", text="x"), Signals()).to_verdict("1")
                    seen_versions.add((verdict.policy.version, verdict.action.value))
                except Exception as exc:  # the test reports any failure
                    errors.append(exc)

        worker = threading.Thread(target=serve)
        worker.start()
        first = watcher.current().active[0].ref
        try:
            path.write_text(POLICY.format(version=2, when='text == "x"', action="block"))
            assert wait_for(lambda: watcher.current().active[0].ref.version == 2)
            second = watcher.current().active[0].ref
            assert second.sha256 != first.sha256 and watcher.last_error is None
            assert wait_for(lambda: (2, "block") in seen_versions)

            path.write_text(POLICY.format(version=3, when="labels.undeclared > 1", action="block"))
            assert wait_for(lambda: watcher.last_error is not None)
            problem = watcher.last_error.problems[0]
            assert (problem.line, problem.col) == (5, 18) and "undeclared" in problem.message
            assert watcher.current().active[0].ref == second  # the old version keeps serving
        finally:
            stop.set()
            worker.join()
    assert errors == []
    assert (1, "review") in seen_versions and (2, "block") in seen_versions
    assert all(version != 3 for version, _ in seen_versions)


def test_reload_recovers_after_a_fix(tmp_path):
    path = tmp_path / "live.yaml"
    path.write_text(POLICY.format(version=1, when="size(text) >= 0", action="review"))
    watcher = PolicyWatcher(tmp_path)
    path.write_text("id: live\nversion: 2\nrules: [\n")
    assert watcher.reload() is False and watcher.last_error is not None
    path.write_text(POLICY.format(version=3, when="size(text) >= 0", action="block"))
    assert watcher.reload() is True and watcher.last_error is None
    assert watcher.current().active[0].ref.version == 3


def write_configmap_generation(directory, name, text):
    """Lay out a ConfigMap volume generation the way the kubelet does: `..<gen>/<files>`."""
    generation = directory / name
    generation.mkdir()
    (generation / "policy.yaml").write_text(text)
    staging = directory / "..data_tmp"
    staging.symlink_to(name)
    staging.rename(directory / "..data")  # the atomic swap


def test_configmap_symlink_swap_reloads_the_policy(tmp_path):
    write_configmap_generation(
        tmp_path, "..2026_11_28_01", POLICY.format(version=1, when='text == "x"', action="review")
    )
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    with PolicyWatcher(tmp_path, debounce_s=0.05) as watcher:
        assert watcher.current().policies[0].ref.version == 1
        write_configmap_generation(
            tmp_path,
            "..2026_11_28_02",
            POLICY.format(version=2, when='text == "x"', action="review"),
        )
        assert wait_for(lambda: watcher.current().policies[0].ref.version == 2)


def test_a_reload_that_would_leave_no_active_policy_is_refused(tmp_path):
    path = tmp_path / "live.yaml"
    path.write_text(POLICY.format(version=1, when='text == "x"', action="review"))
    with PolicyWatcher(tmp_path, debounce_s=0.05) as watcher:
        serving = watcher.current()
        path.unlink()
        assert wait_for(lambda: watcher.last_error is not None)
        assert "no policy files" in str(watcher.last_error)
        assert watcher.current() is serving
        watcher.last_error = None
        shadow = POLICY.format(version=2, when='text == "x"', action="block") + "mode: shadow\n"
        (tmp_path / "only-shadow.yaml").write_text(shadow)
        assert wait_for(lambda: watcher.last_error is not None)
        assert "no active policy" in str(watcher.last_error)
        assert watcher.current() is serving, "the old set keeps serving"
