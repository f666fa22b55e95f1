"""The project's documents against the repository and the program.

A user has the repository, not its neighbours: no document may point outside it,
every relative link must reach a file that exists, the protocol reference must
name every client event and error code the server has, the defaults the
documents quote must be the ones settings.py applies, and DEPLOYMENT_GUIDE's list
of metrics must be what a running server answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from ecigdis_ws.errors import ErrorCode
from ecigdis_ws.settings import SPECS, Spec
from ecigdis_ws.transport.socket_events import CLIENT_EVENTS
from tests.support import running_server

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "protocol.md"
# The documents a user reads; docs/ is taken whole (openapi.yaml included).
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "QUICK_START.md", ROOT / "DEPLOYMENT_GUIDE.md",
     ROOT / "client" / "README.md"]
    + [path for path in (ROOT / "docs").rglob("*") if path.is_file()]
)
MARKDOWN = [path for path in DOCUMENTS if path.suffix == ".md"]
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}

# [text](target) outside code: the target up to a space or the closing parenthesis.
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# A quoted default: `NAME` (10 s ...), `NAME` (default 30 s ...), `NAME` (default `chat_`),
# (`NAME`, 25 s). A word in backticks is a default only after "default" (not in
# `LOG_LEVEL` (`debug`, ...)), a bare number after a comma only with its unit.
INLINE_DEFAULT = re.compile(
    r"`([A-Z][A-Z0-9_]+)`(?:,? \((?:default (`[^`]*`)|(?:default )?(\d[\d,.]*(?: ?\w+)?))"
    r"|, (\d[\d,.]* ?(?:ms|s|days|MiB|KiB)\b))"
)
VALUE = re.compile(r"^(\d[\d,]*(?:\.\d+)?)(?:\s*(ms|s|days?|MiB|KiB)\b)?")
SECONDS = {"ms": 0.001, "s": 1, "day": 86400, "days": 86400}


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where links are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(match) for match in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("path", DOCUMENTS, ids=_relative)
def test_no_document_points_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text and "shared/PROTOCOL" not in text
    assert "PROTOCOL.md" not in text, "the protocol reference is docs/protocol.md"


@pytest.mark.parametrize("path", MARKDOWN, ids=_relative)
def test_every_relative_link_reaches_a_file_in_the_repository(path: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not _reaches(linked, anchor):
            broken.append(target)
    assert broken == [], f"{_relative(path)} links to what is not there"


def _reaches(linked: Path, anchor: str) -> bool:
    """A file inside the repository, and in a Markdown file the heading named."""
    if not linked.is_relative_to(ROOT) or not linked.exists():
        return False
    return not anchor or linked.suffix != ".md" or anchor in _anchors(linked)


def test_the_link_check_sees_a_broken_link() -> None:
    """(The check above finds links in prose, not in code.)"""
    text = "See [it](docs/nowhere.md) and `[code](x)`.\n```\n[fenced](y)\n```\n"
    assert LINK.findall(_prose(text)) == ["docs/nowhere.md"]
    assert _slug("Client → server events") == "client--server-events"


def test_the_protocol_reference_names_every_client_event_and_error_code() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    missing = [name for name in (*CLIENT_EVENTS, *(code.value for code in ErrorCode))
               if f"`{name}`" not in text]
    assert missing == [], "docs/protocol.md does not describe these"


def _in_spec_units(spec: Spec, quoted: str) -> str:
    """A quoted default (`4000`, 10 s, 8 MiB, 30 days, (empty)) in the unit of SPECS."""
    quoted = quoted.strip()
    if quoted.startswith("`"):
        return quoted.strip("`")
    if quoted.startswith("(empty)"):
        return ""
    match = VALUE.match(quoted)
    assert match, f"{spec.name}: cannot read the default {quoted!r}"
    number, unit = float(match.group(1).replace(",", "")), match.group(2)
    if unit in SECONDS:
        number *= SECONDS[unit] * (1000 if spec.name.endswith("_MS") else 1)
    elif unit in ("MiB", "KiB"):
        number *= 2**20 if unit == "MiB" else 2**10
    return str(int(number)) if number.is_integer() else str(number)


def _table_defaults(path: Path) -> list[tuple[str, str]]:
    """(setting, quoted default) of every Markdown table with a `default` column
    whose first cell names a setting."""
    found: list[tuple[str, str]] = []
    column = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if column is None:
            column = cells.index("default") if "default" in cells else -1
            continue
        name = cells[0].strip("`")
        if column > 0 and cells[0].startswith("`") and name in SPEC_BY_NAME:
            found.append((name, cells[column]))
    return found


def _quoted_defaults() -> list[tuple[str, str, str]]:
    quoted = []
    for path in MARKDOWN:
        for name, value in _table_defaults(path):
            quoted.append((_relative(path), name, value))
        text = path.read_text(encoding="utf-8")
        for name, word, number, with_unit in INLINE_DEFAULT.findall(text):
            if name in SPEC_BY_NAME:
                quoted.append((_relative(path), name, word or number or with_unit))
    return quoted


def test_the_defaults_the_documents_quote_are_the_programs() -> None:
    quoted = _quoted_defaults()
    assert len(quoted) > 60  # the protocol's settings table and the inline ones
    wrong = [(where, name, value, SPEC_BY_NAME[name].default)
             for where, name, value in quoted
             if _in_spec_units(SPEC_BY_NAME[name], value) != SPEC_BY_NAME[name].default]
    assert wrong == []


def test_the_default_check_reads_units() -> None:
    spec = SPEC_BY_NAME
    assert _in_spec_units(spec["HTTP_BODY_TIMEOUT_MS"], "10 s") == "10000"
    assert _in_spec_units(spec["JWT_MAX_TTL_S"], "30 days") == "2592000"
    assert _in_spec_units(spec["WS_MAX_BUFFERED_BYTES"], "8 MiB by default") == "8388608"
    assert _in_spec_units(spec["RATE_LIMIT_EVENTS"], "20/s per socket") == "20"
    assert _in_spec_units(spec["DB_TIMEOUT_MS"], "3 s") == "3000"
    assert _in_spec_units(spec["DB_TABLE_PREFIX"], "`chat_`") == "chat_"
    assert _in_spec_units(spec["API_KEY"], "(empty)") == ""
    assert _in_spec_units(spec["TYPING_TIMEOUT_MS"], "5 s") != spec["TYPING_TIMEOUT_MS"].default


def _guide_metrics() -> tuple[set[str], str]:
    """The metric names in DEPLOYMENT_GUIDE's section 15 table."""
    guide = (ROOT / "DEPLOYMENT_GUIDE.md").read_text(encoding="utf-8")
    section = guide.split("## 15. Prometheus", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(ecigdis_ws_\w+)", section, re.M)), section


async def test_deployment_guide_lists_the_metrics_a_running_server_gives(
    tmp_path: Path,
) -> None:
    async with (
        running_server(tmp_path) as server,
        aiohttp.ClientSession() as http,
        http.get(server.url + "/metrics") as response,
    ):
        text = await response.text()
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    listed, section = _guide_metrics()
    own = {name for name in families
           if name.startswith("ecigdis_ws_") and not name.endswith("_created")}
    assert own == listed
    for name in families - own:
        # The client library's series are named by their pattern, each one present.
        assert name.endswith("_created") or name.startswith("process_"), name
        if name.startswith("process_"):
            assert f"`{name}`" in section
    assert "`*_created`" in section
