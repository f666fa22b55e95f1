"""Check every installed distribution against PyPI's vulnerability data.

pip-audit asks PyPI's per-version JSON endpoint, which the package proxy of this
workplace does not serve; the per-project endpoint is served and carries the
known vulnerabilities (from the PyPA advisory database, as pip-audit uses) of
the latest release. So: a distribution pinned at its latest release is audited
from that; one pinned older is audited from the per-version endpoint when it
answers, and otherwise listed as not audited. Exit status 1 on any known
vulnerability or when PyPI cannot be reached at all.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from importlib import metadata

PYPI = "https://pypi.org/pypi"
TIMEOUT_S = 15
ATTEMPTS = 3
SKIP = {"ecigdis-ws"}  # this project itself


def fetch(url: str) -> dict[str, object] | None:
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                data: dict[str, object] = json.load(response)
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            error: Exception = exc
        except (urllib.error.URLError, TimeoutError) as exc:
            error = exc
        time.sleep(1 + attempt)
    raise ConnectionError(f"{url}: {error}")


def vulnerabilities(name: str, version: str) -> list[dict[str, object]] | None:
    """Known vulnerabilities of name==version, or None when it cannot be told."""
    exact = fetch(f"{PYPI}/{name}/{version}/json")
    if exact is not None:
        return list(exact.get("vulnerabilities") or [])  # type: ignore[call-overload]
    project = fetch(f"{PYPI}/{name}/json")
    info = project.get("info") if project else None
    if isinstance(info, dict) and info.get("version") == version:
        return list(project.get("vulnerabilities") or [])  # type: ignore[union-attr, call-overload]
    return None


def main() -> int:
    found: list[str] = []
    unaudited: list[str] = []
    audited = 0
    for dist in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower()):
        name, version = dist.metadata["Name"], dist.version
        if name.lower() in SKIP:
            continue
        try:
            known = vulnerabilities(name, version)
        except ConnectionError as exc:
            print(f"audit: PyPI unreachable: {exc}", file=sys.stderr)
            return 1
        if known is None:
            unaudited.append(f"{name}=={version}")
            continue
        audited += 1
        for vuln in known:
            found.append(f"{name}=={version}: {vuln.get('id')} fixed in {vuln.get('fixed_in')}")
    print(f"audit: {audited} distributions checked, {len(found)} known vulnerabilities")
    if unaudited:
        print("audit: not the latest release, not auditable here: " + ", ".join(unaudited))
    for line in found:
        print(f"audit: VULNERABLE {line}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
