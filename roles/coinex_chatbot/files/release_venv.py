"""Build a release's venv on the host, in one round trip (tasks/release.yml runs it with the
target Python: ``python3 -c <this file> ...``).

1. The dependency venv ``--deps`` (``<base>/shared/venvs/<lock hash>-<python>-<arch>``) holds every
   pinned dependency of the lock, installed from the wheelhouse (no index) by uv, whose binary is
   unpacked from the wheelhouse's uv wheel into a temporary directory next to the dependency venvs
   (uv resolves, unpacks and byte-compiles the lock's wheels in about half of pip's CPU). The
   venv itself is the target Python's (``python -m venv --without-pip``). It is built once per
   lock; ``.complete`` is written last, and a venv without it is an unfinished one that is built
   again. A release whose lock has not changed does not rebuild it, and never needs uv.
2. The release venv (``--release``/venv) is made without pip (``python -m venv --without-pip``)
   and gets the dependency venv's site-packages as hard links (``cp -al``: no byte is copied, the
   files share their inodes). So the release venv is complete on its own, as before: `current`'s
   site-packages is the only path the processes need (PYTHONPATH), a chain reload imports the new
   release's libraries, and removing a dependency venv never breaks a release. The dependency
   venv's console scripts (uwsgi, dramatiq) are written into the release's bin/ with the
   release's python in their ``#!`` line (or in the ``exec`` line the installer writes when the
   path is too long for ``#!``).
3. The app wheel goes into the release venv alone. A pure-Python wheel without scripts, entry
   points or ``.data`` whose files are all new to the venv (the app's) is unpacked into
   site-packages and byte-compiled, as an installer would (INSTALLER written, RECORD as shipped)
   but without starting one; any other wheel is installed by ``uv pip install --no-deps`` (no
   index). Either way only new files are written: a linked file is never rewritten.
0. The release directory is made (0755) and, with ``--lock-text``, the lock written into it as
   ``--lock`` (the controller passes its text: no transfer of its own).
4. With ``--prebuild MODULE``, ``python -m MODULE`` runs with the release venv's python once the
   app is in (the role passes ``coinex_chatbot.prebuilt``: it writes the knowledge base's indexes
   into the release, so that each task process loads them instead of building them at its start).
   It failing fails the release, which then has no fingerprint.
5. ``.release.json`` (``--info``), then ``.fingerprint`` (``--fingerprint``) are written, each
   atomically, the fingerprint last: it marks the release complete (tasks/releases.yml).
6. The dependency venvs of other locks (the other directories next to ``--deps``) are removed: no
   release needs one once it is built, and only the current lock's serves the next release.

uv reads no configuration file and no index of the host (``UV_OPTIONS``), and neither the release
nor the dependency venv has pip. Prints one JSON line: {"deps_built": bool, "deps": path,
"removed": [paths], "seconds": {...}}. Exits non-zero with the failed step's command and output.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

# where the installer puts the interpreter of a console script: its first lines
HEAD = 1024
# uv pip install: the wheelhouse only, no configuration file, cache or index of the host
UV_OPTIONS = ["--no-config", "--no-cache", "--offline", "--no-index", "--quiet", "--link-mode=copy"]


def run(step: str, argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{step} failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout}{proc.stderr}")


def site_packages(venv: Path) -> Path:
    return (
        venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    )


def uv_from(wheelhouse: Path, into: Path) -> Path:
    """uv's binary, unpacked from the wheelhouse's one uv wheel into the directory ``into``."""
    wheels = sorted(wheelhouse.glob("uv-*.whl"))
    if len(wheels) != 1:
        sys.exit(f"the wheelhouse {wheelhouse} has {len(wheels)} uv wheels, not one")
    with zipfile.ZipFile(wheels[0]) as zf:
        names = [name for name in zf.namelist() if name.endswith(".data/scripts/uv")]
        if len(names) != 1:
            sys.exit(f"{wheels[0]} has no uv binary (.data/scripts/uv)")
        binary = into / "uv"
        with zf.open(names[0]) as src, binary.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    binary.chmod(0o755)
    return binary


def uv_install(uv: Path, step: str, python: Path, wheelhouse: Path, args: list[str]) -> None:
    """``uv pip install`` into the venv of ``python`` from the wheelhouse, byte-compiled."""
    run(
        step,
        [
            str(uv),
            "pip",
            "install",
            *UV_OPTIONS,
            "--find-links",
            str(wheelhouse),
            "--python",
            str(python),
            "--compile-bytecode",
            *args,
        ],
    )


def build_deps(deps: Path, wheelhouse: Path, lock: Path, uv: Callable[[], Path]) -> bool:
    """The dependency venv of the lock; False when it was already complete."""
    if (deps / ".complete").is_file():
        return False
    if deps.exists():  # an unfinished one (no .complete)
        shutil.rmtree(deps)
    try:
        run("dependency venv", [sys.executable, "-m", "venv", "--without-pip", str(deps)])
        python = deps / "bin" / "python"
        uv_install(uv(), "dependency install", python, wheelhouse, ["--requirement", str(lock)])
        (deps / ".complete").write_text(lock.read_text())
    except BaseException:
        shutil.rmtree(deps, ignore_errors=True)
        raise
    return True


def build_release(
    deps: Path, venv: Path, app_wheel: Path, wheelhouse: Path, uv: Callable[[], Path]
) -> None:
    if venv.exists():  # an unfinished release of an earlier run: start again
        shutil.rmtree(venv)
    run("release venv", [sys.executable, "-m", "venv", "--without-pip", str(venv)])
    run(
        "link the dependencies",
        ["cp", "-al", "--", f"{site_packages(deps)}/.", str(site_packages(venv))],
    )
    # the installer writes the interpreter into a script's first line (#!/path/python) or, for a
    # path too long for a #! line, into a /bin/sh exec line: either way the dependency venv's
    # python is in the script's head, and there it becomes the release's
    old_python, new_python = f"{deps}/bin/python".encode(), f"{venv}/bin/python".encode()
    for script in sorted((deps / "bin").iterdir()):
        target = venv / "bin" / script.name
        if target.exists() or target.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        head, rest = data[:HEAD], data[HEAD:]
        if old_python not in head:
            continue
        target.write_bytes(head.replace(old_python, new_python) + rest)
        target.chmod(0o755)
    if not unpack_wheel(venv, app_wheel):
        uv_install(
            uv(), "app install", venv / "bin" / "python", wheelhouse, ["--no-deps", str(app_wheel)]
        )


def plain_wheel(zf: zipfile.ZipFile, site: Path) -> str | None:
    """The .dist-info directory of a wheel that can be unpacked as it is, else None: one
    .dist-info, ``Root-Is-Purelib: true``, no entry points (console scripts), no ``.data``
    directory, no absolute or ``..`` path, and no file already in ``site``."""
    names = [name for name in zf.namelist() if not name.endswith("/")]  # files, not directories
    tops = {name.split("/", 1)[0] for name in names}
    infos = [top for top in tops if top.endswith(".dist-info")]
    if len(infos) != 1 or f"{infos[0]}/WHEEL" not in names:
        return None
    if "Root-Is-Purelib: true" not in zf.read(f"{infos[0]}/WHEEL").decode().splitlines():
        return None
    if any(top.endswith(".data") for top in tops) or f"{infos[0]}/entry_points.txt" in names:
        return None
    for name in names:
        if name.startswith("/") or ".." in name.split("/") or (site / name).exists():
            return None
    return infos[0]


def unpack_wheel(venv: Path, wheel: Path) -> bool:
    """``wheel`` unpacked into the venv's site-packages and its modules byte-compiled by the
    venv's python; False (nothing written) when it is not a plain wheel (``plain_wheel``)."""
    site = site_packages(venv)
    with zipfile.ZipFile(wheel) as zf:
        if (info_dir := plain_wheel(zf, site)) is None:
            return False
        zf.extractall(site)
        tops = {name.split("/", 1)[0] for name in zf.namelist()} - {info_dir}
    (site / info_dir / "INSTALLER").write_text("release_venv.py\n")
    modules = sorted(str(site / top) for top in tops)
    run("app compile", [str(venv / "bin" / "python"), "-m", "compileall", "-q", *modules])
    return True


def prune_other_venvs(deps: Path) -> list[str]:
    """Remove the dependency venvs of other locks; the removed paths."""
    removed = []
    for other in sorted(deps.parent.iterdir()):
        if other != deps and other.is_dir() and not other.is_symlink():
            shutil.rmtree(other)
            removed.append(str(other))
    return removed


def write_atomically(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    part.chmod(0o644)
    part.replace(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deps", type=Path, required=True, help="dependency venv of the lock")
    p.add_argument("--release", type=Path, required=True, help="release directory")
    p.add_argument("--wheelhouse", type=Path, required=True)
    p.add_argument("--lock", type=Path, required=True)
    p.add_argument("--lock-text", help="the lock's text, written to --lock first")
    p.add_argument("--app-wheel", type=Path, required=True)
    p.add_argument("--info", required=True, help="JSON for .release.json")
    p.add_argument("--fingerprint", required=True, help="content of .fingerprint")
    p.add_argument("--prebuild", help="module the release's python runs (-m) once the app is in")
    args = p.parse_args()
    started = time.monotonic()
    args.release.mkdir(parents=True, exist_ok=True)
    args.release.chmod(0o755)
    if args.lock_text is not None:
        write_atomically(args.lock, args.lock_text)
    args.deps.parent.mkdir(parents=True, exist_ok=True)
    # uv is unpacked only when something is installed by it (next to the venvs: /tmp may be noexec)
    with tempfile.TemporaryDirectory(dir=args.deps.parent, prefix=".uv-") as tmp:
        uv = functools.cache(lambda: uv_from(args.wheelhouse, Path(tmp)))
        deps_built = build_deps(args.deps, args.wheelhouse, args.lock, uv)
        deps_done = time.monotonic()
        build_release(args.deps, args.release / "venv", args.app_wheel, args.wheelhouse, uv)
    release_done = time.monotonic()
    if args.prebuild:
        run("prebuild", [str(args.release / "venv" / "bin" / "python"), "-m", args.prebuild])
    seconds = {
        "deps": round(deps_done - started, 2),
        "release": round(release_done - deps_done, 2),
        "prebuild": round(time.monotonic() - release_done, 2),
    }
    write_atomically(
        args.release / ".release.json",
        json.dumps(json.loads(args.info), indent=4, sort_keys=True) + "\n",
    )
    write_atomically(args.release / ".fingerprint", args.fingerprint + "\n")
    removed = prune_other_venvs(args.deps)
    print(
        json.dumps(
            {
                "deps_built": deps_built,
                "deps": str(args.deps),
                "removed": removed,
                "seconds": seconds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
