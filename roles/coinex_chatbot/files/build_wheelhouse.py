#!/usr/bin/env python3
"""Build, on the controller, the wheels a coinex_chatbot release is installed from.

* the app wheel, built from a clean copy of the app source, cached by the source's hash;
* one wheelhouse per target (python version, architecture), downloaded with
  ``pip download --only-binary=:all:`` for manylinux, cached by the lock's hash, and the same
  wheelhouse as one uncompressed tar (its directory at the top, ``.complete`` last), so that a
  host gets it in one transfer instead of a module round trip per wheel.

Prints one JSON object (``changed``, ``version``, ``app_hash``, ``lock_hash``, ``app_wheel``,
``git_commit`` and ``git_dirty`` of the app source's checkout,
``wheelhouses``, ``wheelhouse_archives``) for the Ansible task that runs it. Concurrent runs are
safe: every result is built in a temporary directory (or file) and renamed into place.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

# pip's vendored packaging and pyproject_hooks are imported where a build needs them: a run that
# finds everything built (``cached``, also called in-process by the coinex_chatbot_build action)
# does not pay for them.
if TYPE_CHECKING:
    from pip._vendor.packaging.requirements import Requirement

EXCLUDED_DIRS = {"__pycache__", "build", "dist", "tests", ".pytest_cache", ".ruff_cache", ".venv"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".egg-info")
# made on each host by the release step (python -m coinex_chatbot.prebuilt), never shipped
EXCLUDED_FILES = {"prebuilt.pickle"}


def source_files(app_src: Path) -> list[Path]:
    """Files that make up the app wheel (tests and build leftovers excluded), sorted."""
    files: list[Path] = []
    for root, dirs, names in os.walk(app_src):
        dirs[:] = sorted(
            d for d in dirs if d not in EXCLUDED_DIRS and not d.endswith(EXCLUDED_SUFFIXES)
        )
        files.extend(
            Path(root) / n
            for n in names
            if not n.endswith(EXCLUDED_SUFFIXES) and n not in EXCLUDED_FILES
        )
    return sorted(files)


def digest(paths: list[Path], base: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        h.update(str(path.relative_to(base)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n"
        )
        raise SystemExit(1)


def build_requirements_met(requires: list[str]) -> bool:
    """True when this interpreter already has every build requirement of the app (its
    ``[build-system] requires``): the wheel is then built without pip's isolated build
    environment, which would install setuptools into a temporary venv on every app change."""
    from pip._vendor.packaging.requirements import Requirement

    for line in requires:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            return False
        if not req.specifier.contains(installed, prereleases=True):
            return False
    return True


def build_wheel_in_place(src: Path, out: Path) -> None:
    """The wheel of ``src`` into ``out`` by its build backend's ``build_wheel`` hook, run in a
    subprocess of this interpreter (without pip's own start-up and metadata pass: about 0.5 s
    instead of 1.3 s for the app)."""
    from pip._vendor.pyproject_hooks import BuildBackendHookCaller, quiet_subprocess_runner

    system = tomllib.loads((src / "pyproject.toml").read_text()).get("build-system", {})
    hooks = BuildBackendHookCaller(
        str(src),
        system.get("build-backend", "setuptools.build_meta:__legacy__"),
        backend_path=system.get("backend-path"),
        runner=quiet_subprocess_runner,
        python_executable=sys.executable,
    )
    out.mkdir()
    try:
        hooks.build_wheel(str(out))
    except Exception as exc:  # the hook's output is in the exception (quiet runner)
        detail = getattr(exc, "output", b"") or b""
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        sys.stderr.write(f"building the app wheel failed: {exc}\n{detail}\n")
        raise SystemExit(1) from exc


def build_app_wheel(pip: list[str], app_src: Path, dest: Path, isolated: bool) -> bool:
    if dest.is_dir() and any(dest.glob("*.whl")):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        src_copy = Path(tmp) / "src"
        shutil.copytree(
            app_src,
            src_copy,
            ignore=shutil.ignore_patterns(*EXCLUDED_DIRS, *EXCLUDED_FILES, "*.pyc", "*.egg-info"),
        )
        out = Path(tmp) / "out"
        if isolated:  # pip makes the build environment with the app's build requirements
            run([*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(src_copy)])
        else:  # this interpreter has them: the backend's PEP 517 hook, as pip would call it
            build_wheel_in_place(src_copy, out)
        try:
            out.rename(dest)
        except OSError:
            if not dest.is_dir():  # another run won the race: fine; otherwise a real error
                raise
    return True


def target_environment(pyver: str, arch: str) -> dict[str, str]:
    """Marker environment of a CPython `pyver` (X.Y.Z) on Linux `arch`."""
    from pip._vendor.packaging.markers import default_environment

    env = dict(default_environment())
    env.update(
        python_full_version=pyver,
        python_version=".".join(pyver.split(".")[:2]),
        platform_machine=arch,
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    return env


def wheel_requirements(wheel: Path) -> list[Requirement]:
    from pip._vendor.packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    return [
        Requirement(line.split(":", 1)[1].strip())
        for line in lines
        if line.startswith("Requires-Dist:")
    ]


def missing_requirements(wheels: list[Path], env: dict[str, str]) -> list[str]:
    """Requirements of these wheels, with markers evaluated for the TARGET, that no wheel provides.

    `pip download --python-version` evaluates dependency markers with the controller's own
    interpreter (e.g. redis needs async-timeout only on Python < 3.11.3): this closes the gap.
    """
    from pip._vendor.packaging.utils import canonicalize_name

    present = {canonicalize_name(w.name.split("-")[0]) for w in wheels}
    requested: dict[str, set[str]] = {}
    for wheel in wheels:
        requested.setdefault(canonicalize_name(wheel.name.split("-")[0]), {""})
        for req in wheel_requirements(wheel):
            requested.setdefault(canonicalize_name(req.name), {""}).update(req.extras)
    missing: list[str] = []
    for wheel in wheels:
        extras = requested.get(canonicalize_name(wheel.name.split("-")[0]), {""})
        for req in wheel_requirements(wheel):
            needed = req.marker is None or any(
                req.marker.evaluate({**env, "extra": e}) for e in extras
            )
            if needed and canonicalize_name(req.name) not in present:
                missing.append(f"{req.name}{req.specifier}")
    return sorted(set(missing))


def lock_pins(lock: Path) -> dict[str, str]:
    """name -> "name==version" of the lock's exact pins, markers dropped."""
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = f"{req.name}{req.specifier}"
    return pins


def download_wheelhouse(
    pip: list[str],
    lock: Path,
    extras: list[str],
    app_wheel: Path,
    pyver: str,
    arch: str,
    dest: Path,
) -> bool:
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

    if (dest / ".complete").is_file():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = "".join(pyver.split(".")[:2])
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        out = Path(tmp) / "wheels"
        download = [
            *pip,
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--platform",
            f"manylinux_2_28_{arch}",
            "--platform",
            f"manylinux2014_{arch}",
            "--python-version",
            pyver,
            "--implementation",
            "cp",
            "--abi",
            f"cp{tag}",
            "--dest",
            str(out),
        ]
        run([*download, "--requirement", str(lock), *extras])
        env = target_environment(pyver, arch)
        pins = lock_pins(lock)
        while missing := missing_requirements([*out.glob("*.whl"), app_wheel], env):
            # a pin of the lock wins (its marker was judged by the controller's interpreter)
            run(
                [*download, *(pins.get(canonicalize_name(Requirement(m).name), m) for m in missing)]
            )
        (out / ".complete").write_text("")
        if dest.exists():
            shutil.rmtree(dest)
        try:
            out.rename(dest)
        except OSError:
            if not (dest / ".complete").is_file():
                raise
    return True


def wheelhouse_archive(wheelhouse: Path) -> tuple[Path, bool]:
    """``<wheelhouse>.tar``: the complete wheelhouse directory, ``.complete`` last (a host whose
    extraction was cut short has no marker and extracts again). Built once, renamed into place."""
    archive = archive_of(wheelhouse)
    if archive.is_file():
        return archive, False
    members = sorted(p for p in wheelhouse.iterdir() if p.name != ".complete")
    members.append(wheelhouse / ".complete")

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    fd, part = tempfile.mkstemp(dir=wheelhouse.parent, suffix=".tar.part")
    os.close(fd)
    with tarfile.open(part, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(wheelhouse, arcname=wheelhouse.name, recursive=False, filter=owned_by_root)
        for member in members:
            tar.add(member, arcname=f"{wheelhouse.name}/{member.name}", filter=owned_by_root)
    os.chmod(part, 0o644)
    os.replace(part, archive)
    return archive, True


def git_state(app_src: Path) -> dict[str, str | bool]:
    """What a release is built from (its .release.json): the commit of the app source's checkout,
    and dirty when the app source has changes git does not ignore; no commit outside a checkout
    (or without git). Asked on every run, never cached."""
    argv = ["git", "-C", str(app_src), "status", "--porcelain=v2", "--branch"]
    try:
        proc = subprocess.run(
            [*argv, "--untracked-files=normal", "--", "."], capture_output=True, text=True
        )
    except OSError:
        return {"git_commit": "", "git_dirty": False}
    if proc.returncode != 0:
        return {"git_commit": "", "git_dirty": False}
    lines = proc.stdout.splitlines()
    oid = [ln.split()[2] for ln in lines if re.fullmatch(r"# branch\.oid [0-9a-f]{40}", ln)]
    return {
        "git_commit": oid[0] if oid else "",
        "git_dirty": any(not ln.startswith("#") for ln in lines),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-src", type=Path, required=True)
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        help="PYVER:ARCH, e.g. 3.11.2:x86_64 (full version: markers)",
    )
    parser.add_argument(
        "--extra", action="append", default=[], help="extra exact pin for the wheelhouse"
    )
    return parser.parse_args(argv)


def layout(args: argparse.Namespace) -> dict:
    """What this source and lock build, and where the cache keeps it: the name, version and
    hashes, the app wheel's directory, and per target its wheelhouse and that one's archive."""
    app_src = args.app_src.resolve()
    pyproject = tomllib.loads((app_src / "pyproject.toml").read_text())
    name, version = pyproject["project"]["name"], pyproject["project"]["version"]
    app_hash = digest(source_files(app_src), app_src)
    lock = args.lock.resolve()
    lock_hash = digest([lock], lock.parent, "\n".join(sorted(args.extra)))
    wheelhouses = {}
    for target in sorted(set(args.target)):
        pyver, arch = target.split(":")
        wheelhouses[f"{pyver}-{arch}"] = args.cache / "wheelhouse" / f"{lock_hash}-py{pyver}-{arch}"
    return {
        "app_src": app_src,
        "pyproject": pyproject,
        "name": name,
        "version": version,
        "app_hash": app_hash,
        "lock_hash": lock_hash,
        "app_dir": args.cache / "app" / f"{name}-{version}-{app_hash}",
        "wheelhouses": wheelhouses,
    }


def result(found: dict, changed: bool, app_wheel: Path) -> dict:
    """The JSON object this script prints (the Ansible task reads it)."""
    houses = found["wheelhouses"]
    return {
        "changed": changed,
        "name": found["name"],
        "version": found["version"],
        "app_hash": found["app_hash"],
        "lock_hash": found["lock_hash"],
        "app_wheel": str(app_wheel),
        "wheelhouses": {key: str(path) for key, path in houses.items()},
        "wheelhouse_archives": {key: str(archive_of(path)) for key, path in houses.items()},
        **git_state(found["app_src"]),
    }


def archive_of(wheelhouse: Path) -> Path:
    return wheelhouse.with_name(wheelhouse.name + ".tar")


def cached(argv: list[str] | None) -> dict | None:
    """The result when everything is already in the cache (the app wheel of this source, each
    target's complete wheelhouse and its archive), without building or importing pip; None when
    something needs building. A no-op deploy's check: the coinex_chatbot_build action calls it
    in its own process, and runs this script only when it returns None."""
    return cached_result(layout(parse_args(argv)))


def cached_result(found: dict) -> dict | None:
    wheels = sorted(found["app_dir"].glob("*.whl"))
    houses = found["wheelhouses"].values()
    if not wheels or not all(
        (h / ".complete").is_file() and archive_of(h).is_file() for h in houses
    ):
        return None
    return result(found, False, wheels[0])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    found = layout(args)  # the source and lock hashed once, for the check and the build
    if (done := cached_result(found)) is not None:
        print(json.dumps(done))
        return 0
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    isolated = not build_requirements_met(found["pyproject"]["build-system"]["requires"])
    changed = build_app_wheel(pip, found["app_src"], found["app_dir"], isolated)
    app_wheel = sorted(found["app_dir"].glob("*.whl"))[0]
    for key, dest in found["wheelhouses"].items():
        pyver, arch = key.split("-")
        if download_wheelhouse(pip, args.lock.resolve(), args.extra, app_wheel, pyver, arch, dest):
            changed = True
            archive_of(dest).unlink(missing_ok=True)  # of an unfinished one
        changed = wheelhouse_archive(dest)[1] or changed
    print(json.dumps(result(found, changed, app_wheel)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
