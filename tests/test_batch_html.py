"""`kerasrepair batch --html`: one self-contained page of a run (summary, sortable and
filterable table), made from a real zoo with hostile names, and checked in a real
headless browser (tests marked `browser`: Debian's chromium; skipped without one)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, MODELS
from kerasrepair import html_report
from kerasrepair.cli import app
from kerasrepair.zoo import Summary

RELEASES = FIXTURES / "releases"
HOSTILE_NAME = "<script>alert(1)</script>.keras"  # a folder `<script>alert(1)<`, a file in it
# name in the zoo -> source (None: not an archive at all)
ZOO = {
    "team/sequential_mlp.keras": MODELS / "sequential_mlp.keras",
    "team/deep/layer_zoo.keras": RELEASES / "keras-3.15.1" / "layer_zoo.keras",
    "lambda_global.keras": MODELS / "lambda_global.keras",
    "subclassed.keras": MODELS / "subclassed.keras",
    HOSTILE_NAME: MODELS / "subclassed.keras",  # also a duplicate of subclassed.keras
    "old/nested.keras": RELEASES / "keras-3.6.0" / "sequential_nested_functional.keras",
    "hostile.keras": FIXTURES / "hostile" / "absolute_name.keras",
    "not_a_zip.keras": None,
}
ROW = re.compile(r'<tr data-status="([^"]*)">(.*?)</tr>', re.S)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real `batch --html` run over the zoo: (page text, report records, html path);
    the page shows paths under the zoo (`_short`)."""
    root = tmp_path_factory.mktemp("html")
    zoo = root / "zoo"
    for name, source in ZOO.items():
        (zoo / name).parent.mkdir(parents=True, exist_ok=True)
        if source is None:
            (zoo / name).write_bytes(b'<img src="https://example.com/x.png">\n')
        else:
            shutil.copyfile(source, zoo / name)
    page, report = root / "report.html", root / "report.jsonl"
    ran = CliRunner().invoke(
        app,
        [
            "batch", str(zoo), "-o", str(root / "out"), "--keras", "3.6",
            "--report", str(report), "--html", str(page), "--jobs", "2",
        ],
    )  # fmt: skip
    assert ran.exit_code == 2, ran.output  # two archives are errors
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(records) == len(ZOO)
    assert all(r["path"].startswith(f"{zoo}/") for r in records)
    return page.read_text(encoding="utf-8"), records, page


def _short(records):
    """Each record's path as the page shows it: under the folder they all share."""
    prefix = os.path.commonprefix([r["path"] for r in records])
    prefix = prefix[: prefix.rfind("/") + 1]
    return [r["path"][len(prefix) :] for r in records]


def _summary(records):
    summary = Summary()
    for record in records:
        summary.add(record)
    return summary


def _cell_text(cell: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", cell))


# ------------------------------------------------------------------ the page itself


def test_the_page_references_nothing_outside_itself(run):
    page, _, _ = run
    lowered = page.lower()
    for needle in ("http://", "https://", "//cdn", "src=", "href=", "@import", "url(", "ftp:"):
        assert needle not in lowered, needle
    elements = re.findall(r"<(script|style|link|img|iframe|object|embed)\b", lowered)
    assert elements == ["style", "style", "script"]  # the second for <noscript>
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)[1]
    assert "default-src 'none'" in policy and "unsafe" not in policy


def test_hostile_names_and_messages_are_escaped(run):
    page, records, _ = run
    assert "<script>alert" not in page and "alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.keras" in page
    assert page.count("<script") == 1  # the page's own
    # what a non-zip's first bytes say comes back in the error message: escaped too
    (error,) = [r["error"] for r in records if r["path"].endswith("not_a_zip.keras")]
    assert "<img" in error and html.escape(error, quote=True) in page


def test_one_row_per_record_in_report_order(run):
    page, records, _ = run
    rows = ROW.findall(page)
    assert [status for status, _ in rows] == [r["status"] for r in records]
    for (_, row), record, short in zip(rows, records, _short(records), strict=True):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert _cell_text(cells[1]) == short and not short.startswith("/")
        assert f'title="{html.escape(record["path"])} sha256 {record["sha256"]}"' in row
        assert _cell_text(cells[5]).split() == record["codes"]
        assert f'data-v="{len(record["changes"])}"' in row


def test_the_summary_has_the_counts_per_status_and_code_and_the_slowest(run):
    page, records, _ = run
    summary = _summary(records)
    assert summary.counts == {
        "clean": 2, "fixed": 2, "unfixable": 1, "error": 2, "duplicate": 1,
    }  # fmt: skip
    cards = dict(
        re.findall(
            r'<button type="button" class="card [^"]*" data-status="(\w+)"[^>]*><b>(\d+)<', page
        )
    )
    assert {status: int(n) for status, n in cards.items()} == summary.counts
    assert f'<div class="card total"><b>{len(records)}</b>' in page
    codes = re.findall(r'<button type="button" class="code mono"[^>]*>(\w+)</button></td>'
                       r'<td class="num">(\d+)</td>', page)  # fmt: skip
    assert {code: int(n) for code, n in codes} == summary.codes
    assert "unknown-argument" in page  # each code's rule, named
    slowest = page.split("<h2>Slowest</h2>", 1)[1].split("</section>", 1)[0]
    listed = [html.unescape(p) for p in re.findall(r'<td class="mono">(.*?)</td>', slowest)]
    under = os.path.dirname(records[0]["path"].replace("/team/", "/")) + "/"
    assert f'Archives under <code id="under">{html.escape(under)}</code>' in page
    assert [under + path for path in listed] == [path for _, path in summary.slowest]
    assert len(listed) == 5


def test_render_cleans_what_untrusted_text_could_do():
    spoof = "evil\u202egnp.keras"  # renders as "eviläsarek.png" without the cleaning
    records = [
        {
            "path": "bad\x00\x1b[31mname\udcff.keras",  # NUL, an escape, undecodable byte
            "sha256": '"><b onmouseover=alert(1)>',
            "bytes": "lots",
            "status": 'error"><i>',
            "codes": ["KR999<"],
            "changes": [{"code": "KR1", "location": "/a'b", "description": "<u>x</u>"}],
            "error": "Error: </td></tr></table><script>alert(2)</script>",
            "seconds": float("nan"),
        },
        {"path": spoof, "status": "clean", "codes": [], "changes": [], "seconds": 0.5},
    ]
    page = html_report.render(records, _summary(records))
    page.encode("utf-8")  # no lone surrogate left
    assert "\x00" not in page and "\x1b" not in page and "\u202e" not in page
    assert "evil\ufffdgnp.keras" in page and "bad\ufffd\ufffd[31mname\ufffd.keras" in page
    assert page.count("<script") == 1 and "<b " not in page and "<i>" not in page
    assert "<u>" not in page and "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;" in page
    assert len(ROW.findall(page)) == 2 and 'data-v="0"' in page  # nan, "lots": 0


def test_an_empty_run_still_makes_a_page():
    page = html_report.render([], Summary())
    assert "<tbody>\n\n</tbody>" in page and ">0</b><span>archives" in page


def test_write_is_atomic_and_replaces_the_page(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    html_report.write(target, [], Summary())
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["report.html"]  # no temporary left


def test_without_html_no_page_is_written(tmp_path):
    (tmp_path / "zoo").mkdir()
    shutil.copyfile(MODELS / "subclassed.keras", tmp_path / "zoo" / "a.keras")
    ran = CliRunner().invoke(app, ["batch", str(tmp_path / "zoo"), "--check-only"])
    assert ran.exit_code == 0, ran.output
    assert not list(tmp_path.rglob("*.html"))


# ------------------------------------------------------------------ in a real browser

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str:
    for name in (os.environ.get("KERASREPAIR_CHROMIUM"), *CHROMIUM_NAMES):
        if name and (found := shutil.which(name)):
            return found
    if os.environ.get("KERASREPAIR_REQUIRE_BROWSER"):  # CI that installed one: never skip
        pytest.fail("KERASREPAIR_REQUIRE_BROWSER is set and no chromium binary is on PATH")
    pytest.skip(
        "no chromium binary (looked for $KERASREPAIR_CHROMIUM, "
        + ", ".join(CHROMIUM_NAMES)
        + "): `apt-get install -y chromium` to run the browser tests"
    )


def _browse(tmp_path, url: str, *args: str) -> subprocess.CompletedProcess:
    """Chromium, headless, offline (every host name unresolvable), a fresh profile."""
    command = [
        _chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
        "--no-first-run", "--no-default-browser-check", "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,900", *args, url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


# Runs after the page's own script: clicks headers, types a filter, picks a status,
# and leaves what it saw in <pre id="result">.
PROBE = """
(function () {
  function visible() {
    return Array.from(document.querySelectorAll("#runs tbody tr"))
      .filter(function (r) { return !r.hidden && getComputedStyle(r).display !== "none"; })
      .map(function (r) { return r.cells[1].textContent; });
  }
  function click(key) { document.querySelector('#runs th[data-key="' + key + '"] button').click(); }
  function sorted(key) {
    return document.querySelector('#runs th[data-key="' + key + '"]').getAttribute("aria-sort");
  }
  var q = document.getElementById("q"), status = document.getElementById("status");
  var out = {
    ran: document.body.classList.contains("js"),
    fetched: performance.getEntriesByType("resource").length,
    initial: visible(),
  };
  click("seconds"); out.seconds_1 = visible(); out.aria_1 = sorted("seconds");
  click("seconds"); out.seconds_2 = visible(); out.aria_2 = sorted("seconds");
  click("bytes"); out.bytes = visible();
  click("n"); out.back = visible();
  q.value = "LAMBDA"; q.dispatchEvent(new Event("input"));
  out.lambda = visible(); out.shown = document.getElementById("shown").textContent;
  q.value = "team keras"; q.dispatchEvent(new Event("input")); out.team = visible();
  q.value = ""; q.dispatchEvent(new Event("input"));
  status.value = "error"; status.dispatchEvent(new Event("change")); out.errors = visible();
  document.querySelector('button.card[data-status="clean"]').click();
  out.card = visible(); out.select = status.value;
  document.querySelector('button.card[data-status="clean"]').click(); out.card_off = visible();
  q.value = "no such archive"; q.dispatchEvent(new Event("input"));
  out.none = visible(); out.empty_note = !document.getElementById("empty").hidden;
  q.value = ""; q.dispatchEvent(new Event("input"));
  document.querySelector("button.code").click(); out.code = q.value; out.by_code = visible();
  var first = document.querySelector("#runs tbody tr");
  q.value = first.cells[1].title.split(" sha256 ")[1]; q.dispatchEvent(new Event("input"));
  out.by_sha = visible();
  q.value = out.code; q.dispatchEvent(new Event("input"));
  out.hash = location.hash;
  var pre = document.createElement("pre");
  pre.id = "result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


def _with_probe(page: str) -> str:
    """The page with PROBE appended, and allowed by its Content-Security-Policy."""
    probe_hash = html_report._sha256_source(PROBE)
    assert page.count("script-src ") == 1
    page = page.replace("script-src ", f"script-src {probe_hash} ")
    return page.replace("</body>", f"<script>{PROBE}</script>\n</body>")


def _dom(tmp_path, path, fragment: str = "") -> str:
    return _browse(tmp_path, path.as_uri() + fragment, "--dump-dom").stdout


@pytest.mark.browser
def test_sorting_and_filtering_work_in_chromium(run, tmp_path):
    page, records, _ = run
    probed = tmp_path / "probed.html"
    probed.write_text(_with_probe(page), encoding="utf-8")
    dom = _dom(tmp_path, probed)
    result = json.loads(html.unescape(re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)[1]))

    paths = _short(records)
    short = dict(zip((r["path"] for r in records), paths, strict=True))
    assert result["ran"] is True  # the page's script ran: its CSP hash is right
    assert result["fetched"] == 0  # nothing asked of the network
    assert result["initial"] == paths
    by_seconds = [short[r["path"]] for r in sorted(records, key=lambda r: -r["seconds"])]
    assert result["seconds_1"] == by_seconds and result["aria_1"] == "descending"
    ascending = [short[r["path"]] for r in sorted(records, key=lambda r: r["seconds"])]
    assert result["seconds_2"] == ascending and result["aria_2"] == "ascending"
    assert result["bytes"] == [short[r["path"]] for r in sorted(records, key=lambda r: -r["bytes"])]
    assert result["back"] == paths
    assert result["lambda"] == [p for p in paths if "lambda" in p]
    assert result["shown"] == f"1 of {len(records)} archives match"
    assert result["team"] == [p for p in paths if p.startswith("team/")]
    assert len(result["team"]) == 2
    assert result["errors"] == [short[r["path"]] for r in records if r["status"] == "error"]
    assert result["card"] == [short[r["path"]] for r in records if r["status"] == "clean"]
    assert result["select"] == "clean" and result["card_off"] == paths
    assert result["none"] == [] and result["empty_note"] is True
    code = result["code"]  # the most frequent code; its rows are those whose codes have it
    assert code == max(_summary(records).codes.items(), key=lambda item: item[1])[0]
    assert result["by_code"] == [short[r["path"]] for r in records if code in r["codes"]]
    assert result["by_sha"] == [paths[0]]  # the title (full path, sha256) is searched too
    assert result["hash"] == f"#q={code}&sort=n&dir=asc"


@pytest.mark.browser
def test_a_view_given_in_the_url_is_applied_on_load(run, tmp_path):
    _, records, path = run
    dom = _dom(tmp_path, path, "#q=keras&status=fixed&sort=seconds&dir=desc")
    rows = re.findall(r'<tr data-status="(\w+)"( hidden(?:="")?)?>(.*?)</tr>', dom, re.S)
    shown = [_cell_text(re.findall(r"<td[^>]*>(.*?)</td>", row)[1]) for _, h, row in rows if not h]
    fixed = [r for r in records if r["status"] == "fixed"]
    short = dict(zip((r["path"] for r in records), _short(records), strict=True))
    assert shown == [short[r["path"]] for r in sorted(fixed, key=lambda r: -r["seconds"])]
    assert len(rows) == len(records)  # the others are there, hidden
    assert 'data-key="seconds" data-kind="num" scope="col" aria-sort="descending"' in dom


@pytest.mark.browser
def test_a_screenshot_of_the_page_at_laptop_size(run, tmp_path):
    _, _, path = run
    shot = tmp_path / "report.png"
    _browse(tmp_path, path.as_uri(), "--hide-scrollbars", f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
    assert len(data) > 30_000  # text, badges and a table; a blank page is a few KB


PAGING_PROBE = """
(function () {
  function visible() {
    return Array.from(document.querySelectorAll("#runs tbody tr"))
      .filter(function (r) { return getComputedStyle(r).display !== "none"; })
      .map(function (r) { return r.cells[0].textContent; });
  }
  var more = document.getElementById("more");
  var out = {first: visible(), shown: document.getElementById("shown").textContent};
  more.click(); out.more = visible(); out.more_hidden = more.hidden;
  document.querySelector('#runs th[data-key="seconds"] button').click(); out.sorted = visible();
  var pre = document.createElement("pre");
  pre.id = "result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


@pytest.mark.browser
def test_a_long_table_is_shown_a_page_at_a_time(run, tmp_path):
    _, records, _ = run
    page = html_report.render(records, _summary(records), page=3)
    assert page.count(" hidden>") == len(records) - 3 + 1  # rows past the page, #empty
    probed = tmp_path / "paged.html"
    probe_hash = html_report._sha256_source(PAGING_PROBE)
    page = page.replace("script-src ", f"script-src {probe_hash} ")
    probed.write_text(page.replace("</body>", f"<script>{PAGING_PROBE}</script>\n</body>"))
    dom = _dom(tmp_path, probed)
    result = json.loads(html.unescape(re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)[1]))
    assert result["first"] == ["1", "2", "3"]
    assert result["shown"] == f"{len(records)} archives, the first 3 shown"
    assert result["more"] == ["1", "2", "3", "4", "5", "6"] and result["more_hidden"] is False
    slowest = sorted(range(len(records)), key=lambda i: -records[i]["seconds"])[:6]
    assert result["sorted"] == [str(i + 1) for i in slowest]  # the page applies to the order shown
