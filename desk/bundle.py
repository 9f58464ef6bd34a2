"""`deskbell bundle`: everything a server without network needs to install Deskbell, in one archive.

docs/install.md shows it in use; deploy/install.sh reads what it writes. Standard library only, so that
install.sh can run it with the system's Python from a bare checkout (`python3 -m desk.bundle build`) and check a
bundle before anything is installed (`python3 -m desk.bundle verify DIR`).

The archive holds one folder, `deskbell-bundle/`:

    manifest.json   what is inside, with a SHA-256 and size for every other file
    source/         the code as committed at HEAD (git archive), plus the front-end files web/vendor.py serves
    wheels/         a wheel for the project, every dependency (for this Python and machine) and the build backend
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

FORMAT = 1
TOP = "deskbell-bundle"
MANIFEST = "manifest.json"
# The checkout this module belongs to (desk/settings.py has the same ROOT; not imported, to stay stdlib-only).
ROOT = Path(__file__).resolve().parent.parent
# Left out when the checkout is not a git repository and its files are copied instead.
NOT_SOURCE = {".git", ".venv", "var", "node_modules", "build", "test-artifacts", "__pycache__", ".pytest_cache"}

Log = Callable[[str], None]


class BundleError(Exception):
    """The bundle cannot be made, or a bundle on disk is not what its manifest says."""


def normalize(name: str) -> str:
    """A project name as wheel file names and PEP 503 compare it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the parts ----------------------------------------------------------------------------------------------------


def export_source(checkout: Path, dest: Path, log: Log) -> dict[str, object]:
    """The committed tree of HEAD (uncommitted changes are left out, and said so); a plain copy without git."""
    dest.mkdir(parents=True)
    if (checkout / ".git").exists() and shutil.which("git"):
        commit = _git(checkout, "rev-parse", "HEAD")
        dirty = bool(_git(checkout, "status", "--porcelain", "--untracked-files=no"))
        if dirty:
            log("bundle: the checkout has uncommitted changes; the bundle holds HEAD without them")
        archive = subprocess.run(["git", *_safe(checkout), "archive", "--format=tar", "HEAD"],
                                 check=True, capture_output=True).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            extract(tar, dest)
        return {"commit": commit, "dirty": dirty}
    log("bundle: not a git checkout; copying the source tree")
    def ignore(_folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n in NOT_SOURCE or n.endswith(".egg-info")]

    shutil.copytree(checkout, dest, dirs_exist_ok=True, ignore=ignore)
    return {"commit": None, "dirty": None}


def extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract with the "data" filter (no links out, no devices) where this Python has it: Debian 12's 3.11.2
    predates it (3.11.4)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
    else:
        tar.extractall(dest)  # our own git archive, or a test's own bundle


def _safe(checkout: Path) -> list[str]:
    """git's options for this checkout, also when root runs install.sh on a checkout another user owns (git
    refuses those as "dubious ownership" otherwise)."""
    return ["-C", str(checkout), "-c", f"safe.directory={checkout}"]


def _git(checkout: Path, *args: str) -> str:
    done = subprocess.run(["git", *_safe(checkout), *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def vendor_files(source: Path) -> dict[str, str]:
    """The node_modules files web/vendor.py serves, read from its FILES without importing Flask."""
    tree = ast.parse((source / "web" / "vendor.py").read_text())
    for node in tree.body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == "FILES" for t in targets) and node.value is not None:
            return dict(ast.literal_eval(node.value))
    raise BundleError("web/vendor.py has no FILES")


def _package_of(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[:2]) if parts[0].startswith("@") else parts[0]


def copy_frontend(checkout: Path, source: Path, log: Log) -> list[dict[str, str]]:
    """Copy the served front-end files, each package's package.json and licence, as package-lock.json pins them.

    `npm ci` first when node_modules is missing or holds another version than the lock file's."""
    pinned = json.loads((checkout / "package-lock.json").read_text())["packages"]
    files = vendor_files(source)
    packages = sorted({_package_of(path) for path in files.values()})

    def installed_version(package: str) -> str | None:
        meta = checkout / "node_modules" / package / "package.json"
        return json.loads(meta.read_text()).get("version") if meta.exists() else None

    stale = [p for p in packages if installed_version(p) != pinned[f"node_modules/{p}"]["version"]]
    if stale or not all((checkout / "node_modules" / p).exists() for p in files.values()):
        log(f"bundle: npm ci (node_modules is missing or stale: {', '.join(stale) or 'files missing'})")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=checkout, check=True)
    copied = []
    for package in packages:
        wanted = [path for path in files.values() if _package_of(path) == package]
        extra = [f"{package}/{name}" for name in ("package.json", "LICENSE")
                 if (checkout / "node_modules" / package / name).exists()]  # fmt: skip
        for path in wanted + extra:
            target = source / "node_modules" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkout / "node_modules" / path, target)
        for path in wanted:
            copied.append({"file": f"source/node_modules/{path}", "package": package,
                           "version": pinned[f"node_modules/{package}"]["version"]})  # fmt: skip
    return copied


def build_wheels(source: Path, wheels: Path, python: str, log: Log, find_links: Path | None = None) -> None:
    """`pip wheel` of the project: a wheel for it and every dependency (sdists built here, so the server needs no
    compiler), plus the build backend, which an editable install needs on a server without an index."""
    build_requires = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]["requires"]
    links = ["--find-links", str(find_links)] if find_links else []
    log(f"bundle: pip wheel (this Python: {platform.python_version()}, {platform.machine()})")
    # Captured: the build backend's warnings about our own pyproject would drown the useful lines.
    done = subprocess.run([python, "-m", "pip", "wheel", "--disable-pip-version-check", *links,
                           "--wheel-dir", str(wheels), str(source), *build_requires],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise BundleError(f"pip wheel failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def wheel_entries(wheels: Path) -> list[dict[str, str]]:
    entries = []
    for wheel in sorted(wheels.glob("*.whl")):
        project, version = wheel.name.split("-")[:2]
        entries.append({"file": f"wheels/{wheel.name}", "project": normalize(project), "version": version})
    return entries


def _clean_build_leftovers(source: Path) -> None:
    """pip builds the project in place: drop what it left in the source tree, so the manifest lists the code only."""
    shutil.rmtree(source / "build", ignore_errors=True)
    for info in source.glob("*.egg-info"):
        shutil.rmtree(info)


# -- manifest ----------------------------------------------------------------------------------------------------


def file_table(root: Path) -> dict[str, dict[str, object]]:
    return {
        path.relative_to(root).as_posix(): {"sha256": sha256(path), "size": path.stat().st_size}
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def make_manifest(root: Path, source_info: dict[str, object], frontend: list[dict[str, str]]) -> dict[str, object]:
    project = tomllib.loads((root / "source" / "pyproject.toml").read_text())["project"]
    return {
        "format": FORMAT,
        "name": project["name"],
        "version": project["version"],
        **source_info,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        # Wheels with compiled code fit this Python version and machine only: install.sh checks them.
        "python": {
            "version": f"{sys.version_info.major}.{sys.version_info.minor}",
            "implementation": sys.implementation.name,
            "machine": platform.machine(),
        },
        "requirements": project["dependencies"],
        "wheels": wheel_entries(root / "wheels"),
        "frontend": frontend,
        "files": file_table(root),
    }


def release_id(manifest: dict[str, object]) -> str:
    """The folder name install.sh gives this code under /opt/deskbell/releases: the same code, the same name."""
    commit = manifest.get("commit") or manifest["files"]["source/pyproject.toml"]["sha256"]  # type: ignore[index]
    return f"{manifest['version']}-{str(commit)[:12]}"


def verify(root: Path) -> dict[str, object]:
    """The manifest of the extracted bundle at `root`, once every file matches it and nothing else is there."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{root}: no readable {MANIFEST} ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{root}: bundle format {manifest.get('format')}, this code reads {FORMAT}")
    actual = file_table(root)
    expected = manifest["files"]
    problems = [f"missing: {p}" for p in sorted(set(expected) - set(actual))]
    problems += [f"not in the manifest: {p}" for p in sorted(set(actual) - set(expected))]
    problems += [f"checksum differs: {p}" for p in sorted(set(expected) & set(actual)) if expected[p] != actual[p]]
    have = {w["project"] for w in manifest["wheels"]}
    problems += [f"no wheel for {r}" for r in manifest["requirements"] if requirement_name(r) not in have]
    if problems:
        raise BundleError(f"{root}: the bundle does not match its manifest:\n  " + "\n  ".join(problems))
    return manifest


# -- building ----------------------------------------------------------------------------------------------------


def build(
    out: Path,
    checkout: Path = ROOT,
    python: str = sys.executable,
    find_links: Path | None = None,
    log: Log = lambda message: print(message, file=sys.stderr),
) -> dict[str, object]:
    """Write the bundle to `out` (a .tar.gz, complete or not at all) and return its manifest."""
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix="deskbell-bundle-") as tmp:
        root = Path(tmp) / TOP
        source = root / "source"
        source_info = export_source(checkout, source, log)
        frontend = copy_frontend(checkout, source, log)
        build_wheels(source, root / "wheels", python, log, find_links)
        _clean_build_leftovers(source)
        manifest = make_manifest(root, source_info, frontend)
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        verify(root)
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
            tar.add(root, arcname=TOP)
        os.replace(partial, out)
    size = out.stat().st_size / 1e6
    log(f"bundle: {len(manifest['wheels'])} wheels, {len(manifest['frontend'])} front-end files, "
        f"{len(manifest['files'])} files in all -> {out} ({size:.0f} MB)")  # fmt: skip
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m desk.bundle", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="make a bundle from this checkout")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--find-links", type=Path, default=None, help="a folder of wheels to reuse")
    check = commands.add_parser("verify", help="check an extracted bundle; print its release id")
    check.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(args.out, find_links=args.find_links)
        else:
            manifest = verify(args.root)
            print(json.dumps({"release": release_id(manifest), **{k: manifest[k] for k in ("version", "python")}}))
    except BundleError as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
