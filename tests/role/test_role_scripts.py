"""The role's controller and host scripts (roles/coinex_chatbot/files) and its filters, function
by function on real directories and this interpreter's real packages; the local deploy runs them
whole."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import stat
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from playbook_runner import ROOT

FILES = ROOT / "roles" / "coinex_chatbot" / "files"


def load(name: str) -> ModuleType:
    """files/NAME.py, or another file of the role by a path relative to files/."""
    spec = importlib.util.spec_from_file_location(f"role_{Path(name).name}", FILES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_app_wheel_is_built_without_isolation_only_when_the_backend_is_here() -> None:
    """The controller's setuptools (pinned in requirements-deploy.txt) meets app/pyproject.toml's
    build requirement; a version it does not have, or a package it lacks, means pip's isolated
    build as before."""
    met = load("build_wheelhouse").build_requirements_met
    requires = tomllib.loads((ROOT / "app/pyproject.toml").read_text())["build-system"]["requires"]
    assert met(requires), requires
    assert not met(["setuptools>=999"])
    assert not met(["no-such-build-backend-coinex>=1"])
    assert met(['no-such-build-backend-coinex>=1; python_version < "3"'])


def test_the_app_wheel_from_the_backend_hook_is_the_one_pip_builds(tmp_path: Path) -> None:
    """Without isolation the wheel is built by the backend's PEP 517 hook directly: the same
    files as `pip wheel` gives; a broken pyproject.toml fails (exit 1) with the backend's reason."""
    build = load("build_wheelhouse")
    src = tmp_path / "app"
    shutil.copytree(
        ROOT / "app", src, ignore=shutil.ignore_patterns("tests", "*.egg-info", "build")
    )
    build.build_wheel_in_place(src, tmp_path / "hook")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "pip"),
            str(src),
        ],
        check=True,
    )
    (hook,), (pip,) = (tmp_path / "hook").glob("*.whl"), (tmp_path / "pip").glob("*.whl")
    assert hook.name == pip.name
    listing = [
        sorted((i.filename, i.file_size) for i in zipfile.ZipFile(w).infolist())
        for w in (hook, pip)
    ]
    assert listing[0] == listing[1]
    assert any(name.endswith("/tokens.json.gz") for name, _ in listing[0])
    pyproject = src / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "', 'version = "not pep440 '))
    with pytest.raises(SystemExit) as failed:
        build.build_wheel_in_place(src, tmp_path / "broken")
    assert failed.value.code == 1


def test_a_build_that_finds_everything_in_the_cache_is_answered_without_pip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cached`` (what the coinex_chatbot_build action calls in Ansible's own process) answers
    only when the app wheel of this source, each target's complete wheelhouse and its archive
    are in the cache, with what main() prints, and without importing pip; a changed source or a
    missing archive means a build (None)."""
    build = load("build_wheelhouse")
    src, cache, lock = tmp_path / "app", tmp_path / "cache", tmp_path / "requirements.lock"
    (src / "pkg").mkdir(parents=True)
    (src / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1.2.3"\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    (src / "pkg" / "__init__.py").write_text("X = 1\n")
    lock.write_text("redis==5.0.0\n")
    argv = ["--app-src", str(src), "--lock", str(lock), "--cache", str(cache)]
    argv += ["--extra", "supervisor==4.3.0", "--target=3.11.2:x86_64", "--target=3.13.5:aarch64"]
    assert build.cached(argv) is None  # nothing built yet
    found = build.layout(build.parse_args(argv))
    found["app_dir"].mkdir(parents=True)
    (found["app_dir"] / "demo-1.2.3-py3-none-any.whl").write_bytes(b"wheel")
    for house in found["wheelhouses"].values():
        house.mkdir(parents=True)
        (house / ".complete").write_text("")
        build.wheelhouse_archive(house)
    done = build.cached(argv)
    assert done is not None and done["changed"] is False
    assert sorted(done["wheelhouse_archives"]) == ["3.11.2-x86_64", "3.13.5-aarch64"]
    assert build.main(argv) == 0
    assert json.loads(capsys.readouterr().out) == done
    script = str(FILES / "build_wheelhouse.py")
    probe = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('b', {script!r}); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        f"assert m.cached({argv!r}) is not None; "
        "print(sorted(n for n in sys.modules if n.startswith('pip')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    first = next(iter(found["wheelhouses"].values()))
    build.archive_of(first).unlink()
    assert build.cached(argv) is None  # an archive is missing
    build.wheelhouse_archive(first)
    assert build.cached(argv) is not None
    (src / "pkg" / "__init__.py").write_text("X = 2\n")
    assert build.cached(argv) is None  # another source: another app wheel


def _module(name: str, args: dict, tmp_path: Path) -> dict:
    """Run plugins/modules/NAME.py as Ansible does without a controller (its arguments in a
    file), with this interpreter; its JSON result."""
    argfile = tmp_path / f"{name}-args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "plugins" / "modules" / f"{name}.py"), str(argfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(proc.stdout) | {"rc": proc.returncode}


def test_the_switch_writes_its_files_in_one_call_only_where_they_differ(tmp_path: Path) -> None:
    """plugins/modules/coinex_chatbot_files.py (tasks/switch.yml: the record and .went_live)."""
    record, live = tmp_path / "deployed.json", tmp_path / "release" / ".went_live"
    live.parent.mkdir()
    record.write_text("old\n")
    record.chmod(0o600)
    files = [
        {"path": str(record), "content": '{"a": 1}\n'},
        {"path": str(live), "content": "t deploy\n"},
    ]
    check = _module(
        "coinex_chatbot_files",
        {"files": files, "_ansible_check_mode": True, "_ansible_diff": True},
        tmp_path,
    )
    assert check["changed"] and check["changed_files"] == [str(record), str(live)], check
    assert record.read_text() == "old\n" and not live.exists()  # check mode writes nothing
    assert check["diff"][0]["before"] == "old\n(mode 0600)\n"
    assert check["diff"][1]["before"] == "" and check["diff"][1]["after"] == "t deploy\n"
    done = _module("coinex_chatbot_files", {"files": files}, tmp_path)
    assert done["changed"] and done["rc"] == 0, done
    assert record.read_text() == '{"a": 1}\n' and live.read_text() == "t deploy\n"
    assert stat.S_IMODE(record.stat().st_mode) == stat.S_IMODE(live.stat().st_mode) == 0o644
    again = _module("coinex_chatbot_files", {"files": files}, tmp_path)
    assert not again["changed"] and again["changed_files"] == []
    assert not list(tmp_path.rglob("*.tmp"))
    bad = _module(
        "coinex_chatbot_files", {"files": [{"path": "relative", "content": ""}]}, tmp_path
    )
    assert bad.get("failed") and "absolute path" in bad["msg"]


def test_commands_run_at_the_same_time_and_one_over_its_time_is_killed(tmp_path: Path) -> None:
    """files/concurrently.py (tasks/reload_code.yml: the chain reload next to the task restart):
    both run at once; one past its seconds is killed with its process group (a child it started
    too) and reported unfinished; the exit code is 0 either way, 2 on bad usage."""
    script = str(FILES / "concurrently.py")
    child = tmp_path / "child.pid"
    slow = f"sleep 30 & echo $! > {child}; wait"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            script,
            "quick",
            "10",
            json.dumps(["sh", "-c", "sleep 1; echo done; echo oops >&2; exit 3"]),
            "slow",
            "1.5",
            json.dumps(["sh", "-c", slow]),
            "absent",
            "5",
            json.dumps(["/no/such/program"]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["quick"] == {"rc": 3, "stdout": "done\n", "stderr": "oops\n", "finished": True}
    assert out["slow"]["finished"] is False and out["slow"]["rc"] is None
    assert out["absent"]["finished"] is False and "No such file" in out["absent"]["stderr"]
    assert took < 2.5, took  # at the same time: 1 s and 1.5 s, not 2.5 s
    pid = int(child.read_text())
    time.sleep(0.2)
    assert (
        not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )
    bad = subprocess.run([sys.executable, script, "x", "1"], capture_output=True, check=False)
    assert bad.returncode == 2


@pytest.fixture(scope="module")
def uv_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uv wheel of the role's default version, as the controller's wheelhouse gets it."""
    version = yaml.safe_load((ROOT / "roles/coinex_chatbot/defaults/main.yml").read_text())[
        "coinex_chatbot_uv_version"
    ]
    dest = tmp_path_factory.mktemp("uv")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--dest", str(dest), f"uv=={version}"],
        check=True,
    )  # fmt: skip
    (wheel,) = dest.glob("uv-*.whl")
    return wheel


def _dist(path: Path, name: str, files: dict[str, str], purelib: bool = True) -> Path:
    """A wheel ``path`` of distribution ``name`` 1.0 with ``files`` (and its dist-info)."""
    info = f"{name}-1.0.dist-info"
    wheel = f"Wheel-Version: 1.0\nRoot-Is-Purelib: {str(purelib).lower()}\nTag: py3-none-any\n"
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in {
            **files,
            f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
            f"{info}/WHEEL": wheel,
        }.items():
            zf.writestr(arc, text)
        zf.writestr(
            f"{info}/RECORD", "".join(f"{n},,\n" for n in zf.namelist()) + f"{info}/RECORD,,\n"
        )
    return path


def test_a_release_venv_is_built_by_uv_from_the_wheelhouse_and_a_code_release_needs_no_uv(
    tmp_path: Path, uv_wheel: Path
) -> None:
    """files/release_venv.py run whole, as the role runs it: the lock's dependency venv is
    installed by the uv binary of the wheelhouse's uv wheel (byte-compiled, no pip in it), its
    console script is rewritten for the release's python, and an app wheel with entry points goes
    through uv; the next release of the same lock reuses the dependency venv and needs no uv at
    all; and a dependency venv to build from a wheelhouse without uv stops with a clear error."""
    script = FILES / "release_venv.py"
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    shutil.copy(uv_wheel, wheelhouse)
    _dist(wheelhouse / "dep-1.0-py3-none-any.whl", "dep", {
        "dep/__init__.py": "def main():\n    print('dep ok')\n",
        "dep-1.0.dist-info/entry_points.txt": "[console_scripts]\ndep-tool = dep:main\n",
    })  # fmt: skip
    app_with_scripts = _dist(tmp_path / "app-1.0-py3-none-any.whl", "app", {
        "app/__init__.py": "import dep\nVERSION = 1\n",
        "app-1.0.dist-info/entry_points.txt": "[console_scripts]\napp-tool = app:VERSION\n",
    })  # fmt: skip
    venvs = tmp_path / "shared" / "venvs"
    deps = venvs / "lockhash-py-x86_64"

    def release(name: str, app_wheel: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), "--deps", str(deps),
             "--release", str(tmp_path / name), "--wheelhouse", str(wheelhouse),
             "--lock", str(tmp_path / name / "requirements.lock"), "--lock-text", "dep==1.0\n",
             "--app-wheel", str(app_wheel), "--info", "{}", "--fingerprint", name],
            capture_output=True, text=True,
        )  # fmt: skip

    first = release("r1", app_with_scripts)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["deps_built"] is True
    site = load("release_venv").site_packages(deps)
    assert (site / "dep-1.0.dist-info/INSTALLER").read_text().strip() == "uv"
    assert list((site / "dep/__pycache__").glob("__init__.cpython-*.pyc"))
    assert not list(site.glob("pip*")) and not (deps / "bin/pip").exists()
    r1 = tmp_path / "r1/venv"
    tool = (r1 / "bin/dep-tool").read_text()
    assert tool.startswith(f"#!{r1}/bin/python") and str(deps) not in tool
    assert (
        subprocess.run([str(r1 / "bin/dep-tool")], capture_output=True, text=True).stdout
        == "dep ok\n"
    )
    assert (r1 / "bin/app-tool").is_file()  # the app wheel was not plain: uv installed it
    assert [p.name for p in venvs.iterdir()] == [deps.name]  # uv's directory is gone

    # a code-only release: no uv wheel needed (the dependency venv exists, the app wheel is plain)
    (wheelhouse / uv_wheel.name).unlink()
    plain = _dist(tmp_path / "app2-1.0-py3-none-any.whl", "app2", {"app2/__init__.py": "V = 2\n"})
    second = release("r2", plain)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["deps_built"] is False
    check = "import app2, dep; print(app2.V)"
    out = subprocess.run(
        [str(tmp_path / "r2/venv/bin/python"), "-c", check], capture_output=True, text=True
    )
    assert out.stdout == "2\n", out.stderr

    # a new dependency venv without uv in the wheelhouse: a clear error, no half-built venv
    shutil.rmtree(deps)
    third = release("r3", plain)
    assert third.returncode != 0
    assert "has 0 uv wheels, not one" in third.stderr
    assert not deps.exists()


def test_a_release_removes_the_dependency_venvs_of_other_locks(tmp_path: Path) -> None:
    """Only the current lock's dependency venv stays; a file next to them is not a venv."""
    prune = load("release_venv").prune_other_venvs
    venvs = tmp_path / "venvs"
    for name in ("aaaa-py3.11.2-x86_64", "bbbb-py3.11.2-x86_64", "cccc-py3.11.2-x86_64"):
        (venvs / name / "lib").mkdir(parents=True)
        (venvs / name / ".complete").write_text("lock\n")
    (venvs / "notes.txt").write_text("kept\n")
    current = venvs / "bbbb-py3.11.2-x86_64"
    removed = prune(current)
    assert removed == [str(venvs / "aaaa-py3.11.2-x86_64"), str(venvs / "cccc-py3.11.2-x86_64")]
    assert sorted(p.name for p in venvs.iterdir()) == ["bbbb-py3.11.2-x86_64", "notes.txt"]
    assert (current / ".complete").read_text() == "lock\n"
    assert prune(current) == []


def test_a_file_is_in_place_only_when_content_mode_owner_and_group_all_match() -> None:
    state = load("../filter_plugins/coinex_chatbot_state")
    in_place = state.coinex_chatbot_in_place
    text = "[uwsgi]\nprocesses = 2\n"
    sha1 = hashlib.sha1(text.encode()).hexdigest()
    found = {"state": "file", "sha1": sha1, "mode": "0640", "owner": "root", "group": "chatbot"}
    files = {"/etc/x.ini": found}
    assert in_place(files, "/etc/x.ini", text, "0640", "root", "chatbot")
    assert in_place(files, "/etc/x.ini", text)  # what is not given is not compared
    assert in_place(files, "/etc/x.ini", mode="640")
    assert not in_place(files, "/etc/x.ini", text + "# edited\n")
    assert not in_place(files, "/etc/x.ini", text, "0644")
    assert not in_place(files, "/etc/x.ini", text, owner="chatbot")
    assert not in_place(files, "/etc/x.ini", text, group="root")
    assert not in_place(files, "/etc/other.ini", text)  # not reported: the task runs
    assert not in_place({"/etc/x.ini": found | {"sha1": ""}}, "/etc/x.ini", text)  # unreadable
    assert not in_place({"/etc/x.ini": {"state": "link", "target": "/a"}}, "/etc/x.ini")
    assert not in_place(None, "/etc/x.ini", text)


def test_the_report_lists_releases_and_log_files_like_find() -> None:
    state = load("../filter_plugins/coinex_chatbot_state")
    reported = {
        "/b/releases/1.0-a": {"state": "directory"},
        "/b/releases/1.0-a/.fingerprint": {"state": "file", "sha1": "f1", "mode": "0644"},
        "/b/releases/1.0-b": {"state": "directory"},
        "/b/releases/1.0-b/.failed_gate": {"state": "file", "sha1": "f2", "mode": "0644"},
        "/b/releases/1.0-b/lock.txt": {"state": "file", "sha1": "f3"},
        "/b/releases/notes": {"state": "absent"},
        "/b/current": {"state": "link", "target": "/b/releases/1.0-a"},
        "/b/logs/coinex_customer_chatbot_task_00.log": {"state": "file", "mode": "0644"},
        "/b/logs/supervisord.log.1": {"state": "file", "mode": "0640"},
        "/b/logs/other.log": {"state": "file", "mode": "0644"},
    }
    assert state.coinex_chatbot_release_files(reported, "/b/releases/") == [
        {"path": "/b/releases/1.0-a", "isdir": True, "checksum": ""},
        {"path": "/b/releases/1.0-a/.fingerprint", "isdir": False, "checksum": "f1"},
        {"path": "/b/releases/1.0-b", "isdir": True, "checksum": ""},
        {"path": "/b/releases/1.0-b/.failed_gate", "isdir": False, "checksum": "f2"},
    ]
    logs = state.coinex_chatbot_reported_files(
        reported, ["/b/logs/coinex_customer_chatbot*.log*", "/b/logs/supervisord.log*"]
    )
    assert [(f["path"], f["mode"]) for f in logs] == [
        ("/b/logs/coinex_customer_chatbot_task_00.log", "0644"),
        ("/b/logs/supervisord.log.1", "0640"),
    ]


def test_directories_are_in_place_only_with_their_owner_group_and_mode() -> None:
    in_place = load("../filter_plugins/coinex_chatbot_state").coinex_chatbot_dirs_in_place
    found = {"state": "directory", "owner": "root", "group": "chatbot", "mode": "0750"}
    files = {"/b/config": found, "/b": found | {"group": "root", "mode": "0755"}}
    config = {"path": "/b/config", "owner": "root", "group": "chatbot", "mode": "0750"}
    assert in_place(files, [config, {"path": "/b", "owner": "root", "group": "root"}])
    assert in_place(files, [config | {"owner": None, "group": None}])  # local mode: not compared
    assert not in_place(files, [config | {"mode": "0755"}])
    assert not in_place(files, [config | {"group": "root"}])
    assert not in_place(files, [{"path": "/b/config"}])  # default mode 0755
    assert not in_place(files, [config, {"path": "/b/run"}])  # not reported: the task runs
    assert not in_place({"/b/config": {"state": "file"}}, [config])
    assert in_place(files, [])


def test_the_probe_reads_packages_ini_blocks_accounts_and_python(tmp_path: Path) -> None:
    """The probe's read-only answers (plugins/modules/coinex_chatbot_dirs.py), against real files,
    this machine's dpkg, accounts and Python."""
    probe = load("../../../plugins/modules/coinex_chatbot_dirs")
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        "[unix_http_server]\nfile=/run/s.sock\n; chmod=0777\nchmod = 0700\n\n[supervisord]\n"
    )
    assert probe.ini_value(str(conf), "unix_http_server", "chmod") == "0700"
    assert probe.ini_value(str(conf), "supervisord", "chmod") is None
    assert probe.ini_value(str(conf), "inet_http_server", None) is False
    assert probe.ini_value(str(conf), "supervisord", None) is True
    assert probe.ini_value(str(tmp_path / "absent.conf"), "supervisord", None) is False
    marker = "# {mark} coinex_chatbot (managed by Ansible)"
    redis = tmp_path / "redis.conf"
    body = ["x" * 100] * 1000  # larger than the 64 KiB of `read`
    block = "port 6379\nmaxmemory-policy noeviction"
    begin, end = marker.replace("{mark}", "BEGIN"), marker.replace("{mark}", "END")
    redis.write_text("\n".join([*body, begin, block, end, "# after"]) + "\n")
    assert probe.block_sha1(str(redis), marker) == hashlib.sha1(block.encode()).hexdigest()
    redis.write_text("\n".join([*body, begin, block]) + "\n")
    assert probe.block_sha1(str(redis), marker) is None
    found = probe.packages(["dpkg", "no-such-package-coinex"])
    assert found == {"dpkg": True, "no-such-package-coinex": False}
    accounts = probe.accounts(
        {"users": ["root", "no-such-user-coinex"], "groups": ["root", "nog-coinex"]}
    )
    assert (
        accounts["users"]["root"]["home"] == "/root"
        and accounts["users"]["no-such-user-coinex"] is None
    )
    assert accounts["groups"] == {"root": True, "nog-coinex": False}
    words = probe.run([sys.executable, "-c", probe.PYTHON_PROBE]).split()
    assert words[0] == ".".join(map(str, sys.version_info[:3])) and len(words) in (2, 3)
    assert probe.run(["/no/such/python", "-c", "1"]) is None


def test_the_chatbot_probe_asks_what_the_redis_role_would() -> None:
    """The coinex_chatbot role's probe asks, for its own Redis, what coinex_chatbot_redis would ask
    itself (the answers are passed on as coinex_chatbot_redis_host_state)."""
    roles = ROOT / "roles"
    chatbot = yaml.safe_load((roles / "coinex_chatbot/vars/production.yml").read_text())
    redis_vars = yaml.safe_load((roles / "coinex_chatbot_redis/vars/main.yml").read_text())
    redis = yaml.safe_dump(redis_vars["__coinex_chatbot_redis_probe_args"])
    for name in ("__coinex_chatbot_redis_conf", "__coinex_chatbot_redis_marker"):
        redis = redis.replace("{{ " + name + " }}", redis_vars[name])
    asks = yaml.safe_load(redis)
    assert asks.pop("packages") == "{{ __coinex_chatbot_redis_packages }}"
    assert chatbot["__coinex_chatbot_redis_asks_own"] == asks


def test_the_build_record_names_the_commit_and_whether_the_source_was_dirty(tmp_path: Path) -> None:
    """files/build_wheelhouse.py reads the app source's checkout on the controller each run."""
    git_state = load("build_wheelhouse").git_state
    app = tmp_path / "repo" / "app"
    app.mkdir(parents=True)
    assert git_state(app) == {"git_commit": "", "git_dirty": False}  # not a checkout
    (app / "main.py").write_text("print(1)\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for argv in (["init", "-q"], ["add", "."], ["commit", "-qm", "one"]):
        subprocess.run(["git", "-C", str(tmp_path / "repo"), *argv], check=True, env=env)
    head = subprocess.run(
        ["git", "-C", str(app), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_state(app) == {"git_commit": head, "git_dirty": False}
    (tmp_path / "repo" / "elsewhere.txt").write_text("outside app/\n")
    assert git_state(app) == {"git_commit": head, "git_dirty": False}
    (app / "main.py").write_text("print(2)\n")
    assert git_state(app) == {"git_commit": head, "git_dirty": True}


def test_supervisor_state_over_xmlrpc_is_what_supervisorctl_says(tmp_path: Path) -> None:
    """files/supervisor_state.py asks a real supervisord over its socket (one XML-RPC multicall)
    and writes what supervisorctl pid/reread/status say, on the same supervisord: programs in
    and out of a group, RUNNING and FATAL, a changed group and a new program (reread), a file
    supervisord cannot read (reread fails), and a supervisord that is gone."""
    state = load("supervisor_state")
    bin_dir = Path(sys.executable).parent
    conf, extra = tmp_path / "supervisord.conf", tmp_path / "conf.d"
    extra.mkdir()
    conf.write_text(
        "[unix_http_server]\nfile=%(here)s/s.sock\nchmod=0700\n\n"
        "[supervisord]\nlogfile=%(here)s/d.log\npidfile=%(here)s/d.pid\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        "[supervisorctl]\nserverurl=unix://%(here)s/s.sock ; a comment\n\n"
        "[program:alone]\ncommand=sleep 300\nstartsecs=0\n\n"
        "[group:g]\nprograms=a,b\n\n"
        "[program:a]\ncommand=sleep 300\nstartsecs=0\n\n"
        "[program:b]\ncommand=/bin/false\nstartretries=0\nautorestart=false\n\n"
        "[include]\nfiles=%(here)s/conf.d/*.conf\n"
    )
    argv = [str(bin_dir / "supervisorctl"), "-c", str(conf)]
    assert state.socket_path(argv) == str(tmp_path / "s.sock")
    assert state.socket_path([*argv, "-s", "http://x"]) is None  # other options: supervisorctl

    def both() -> tuple[dict, dict]:
        path = state.socket_path(argv)
        return state.by_xmlrpc(path), state.by_supervisorctl(argv)

    def same() -> dict:
        xml, ctl = both()
        assert xml.pop("via") == "xmlrpc" and ctl.pop("via") == "supervisorctl"
        assert xml == ctl
        return xml

    subprocess.run([str(bin_dir / "supervisord"), "-c", str(conf)], check=True)
    try:
        deadline = time.monotonic() + 30
        want = {"alone": "RUNNING", "g:a": "RUNNING", "g:b": "FATAL"}
        while (found := both()[0])["status"] != want:
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        seen = same()
        assert seen["running"] and seen["reread"] == "No config updates to processes"
        assert seen["status"] == want
        conf.write_text(conf.read_text().replace("a]\ncommand=sleep 300", "a]\ncommand=sleep 301"))
        (extra / "c.conf").write_text("[program:c]\ncommand=sleep 300\n")
        seen = same()
        assert seen["reread"] == "c: available\ng: changed" and seen["reread_rc"] == 0, seen
        (extra / "c.conf").write_text("[program:c]\nno command here\n")
        seen = same()
        assert seen["reread"].startswith("ERROR: CANT_REREAD") and seen["reread_rc"] != 0, seen
        out = subprocess.run([*argv, "shutdown"], capture_output=True, text=True, check=True)
        assert "Shut down" in out.stdout, out.stdout
        deadline = time.monotonic() + 30
        while (tmp_path / "s.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert same() == {"running": False, "reread": "", "reread_rc": 0, "status": {}}
    finally:
        subprocess.run([*argv, "shutdown"], capture_output=True, check=False)


def _wheel(path: Path, extra: dict[str, str] | None = None, purelib: bool = True) -> Path:
    """A small wheel of package ``tiny`` (its files; ``extra``: more name -> text)."""
    files = {"tiny/__init__.py": "ANSWER = 42\n", "tiny/data/kb.json": "{}\n", **(extra or {})}
    return _dist(path, "tiny", files, purelib)


def test_a_plain_app_wheel_is_unpacked_and_compiled_and_any_other_left_to_uv(
    tmp_path: Path,
) -> None:
    """files/release_venv.py: a pure wheel without scripts, entry points or .data whose files are
    new to the venv is unpacked (importable, byte-compiled, INSTALLER written); anything else is
    not touched, so uv installs it."""
    release_venv = load("release_venv")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = release_venv.site_packages(venv)
    assert release_venv.unpack_wheel(venv, _wheel(tmp_path / "tiny-1.0-py3-none-any.whl"))
    out = subprocess.run(
        [str(venv / "bin/python"), "-c", "import tiny; print(tiny.ANSWER, tiny.__file__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.split() == ["42", str(site / "tiny/__init__.py")]
    assert list((site / "tiny/__pycache__").glob("__init__.cpython-*.pyc"))
    assert (site / "tiny-1.0.dist-info/INSTALLER").read_text() == "release_venv.py\n"
    assert (site / "tiny/data/kb.json").read_text() == "{}\n"
    # a file of the venv is never rewritten: the same wheel again is left to uv, nothing written
    (site / "tiny/__init__.py").write_text("ANSWER = 0\n")
    assert not release_venv.unpack_wheel(venv, tmp_path / "tiny-1.0-py3-none-any.whl")
    assert (site / "tiny/__init__.py").read_text() == "ANSWER = 0\n"
    info = "tiny-1.0.dist-info"
    for name, wheel in {
        "entry points": _wheel(
            tmp_path / "a.whl", {f"{info}/entry_points.txt": "[console_scripts]\n"}
        ),
        ".data": _wheel(tmp_path / "b.whl", {"tiny-1.0.data/scripts/tiny": "#!python\n"}),
        "platlib": _wheel(tmp_path / "c.whl", purelib=False),
        "..": _wheel(tmp_path / "d.whl", {"../outside.py": ""}),
    }.items():
        other = tmp_path / f"venv-{name}"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True)
        assert not release_venv.unpack_wheel(other, wheel), name
        assert not (release_venv.site_packages(other) / "tiny").exists(), name
