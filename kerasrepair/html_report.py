"""`batch --html`: one self-contained page with the summary and a table of the run.

Everything is in the page: inline CSS, a small inline script (sorting by a
click on a column's header, a filter box, a status filter), no URL of any
kind, so it opens offline and from an attachment. Every text comes from the
report lines, and paths and error messages come from untrusted files: all of
it is HTML-escaped, made valid UTF-8, and stripped of control and
bidirectional-override characters (which could make one path look like
another). A Content-Security-Policy allows only the page's own script and
style (by their sha256) and nothing from the network.

The view can be given in the URL's fragment, and is kept there as it changes:
`report.html#q=KR501&status=unfixable&sort=seconds&dir=desc`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
from pathlib import Path

from . import __version__
from .zoo_job import STATUSES

# (key, header, kind): kind "num" sorts as numbers, "text" in natural order
COLUMNS = (
    ("n", "#", "num"),
    ("path", "Archive", "text"),
    ("status", "Status", "num"),
    ("saved_with", "Saved with", "text"),
    ("target", "Target", "text"),
    ("codes", "Codes", "text"),
    ("changes", "Changes", "num"),
    ("bytes", "Size", "num"),
    ("seconds", "Seconds", "num"),
    ("note", "Output / error", "text"),
)
MAX_CHANGES_SHOWN = 50  # per archive; the report line has them all
PAGE = 1000  # rows shown at first, and added by "Show more"

_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #fff; --head: #f6f8fa;
  --clean: #1a7f37; --fixed: #0969da; --fixable: #8250df; --unfixable: #bc4c00;
  --error: #cf222e; --duplicate: #6e7781; }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 24px 48px; font: 14px/1.45 system-ui, -apple-system,
  "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; color: var(--fg);
  background: var(--bg); }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 0 0 8px; }
.sub { color: var(--muted); margin: 0 0 16px; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo,
  Consolas, monospace; font-size: 12.5px; }
.summary { display: flex; flex-wrap: wrap; gap: 12px 16px; margin-bottom: 16px;
  align-items: stretch; }
.panel { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px;
  background: var(--bg); flex: 1 1 360px; min-width: 0; }
.panel.status { flex-basis: 100%; display: flex; flex-wrap: wrap; align-items: center;
  gap: 8px 24px; }
.panel.status h2 { display: none; }
.panel.status .sub { margin: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 8px; }
.card { border: 1px solid var(--line); border-left: 5px solid var(--duplicate);
  border-radius: 6px; padding: 6px 12px; min-width: 92px; background: var(--head);
  font: inherit; color: inherit; text-align: left; cursor: pointer; }
.card:hover, .card.on { background: #eaeef2; }
.card.on { outline: 2px solid var(--fg); }
.card b { display: block; font-size: 22px; line-height: 1.2; }
.card span { color: var(--muted); }
.card.total { border-left-color: var(--fg); }
.s-clean { border-left-color: var(--clean); } .s-fixed { border-left-color: var(--fixed); }
.s-fixable { border-left-color: var(--fixable); }
.s-unfixable { border-left-color: var(--unfixable); }
.s-error { border-left-color: var(--error); }
.s-duplicate { border-left-color: var(--duplicate); }
.small { border-collapse: collapse; }
.small td, .small th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
.small td.num { text-align: right; }
.small .why { color: var(--muted); }
.small td.mono { word-break: break-all; }
button.code { white-space: nowrap; }
button.code { border: 0; background: none; padding: 0; color: var(--fixed);
  cursor: pointer; font: inherit; }
button.code:hover { text-decoration: underline; }
.controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center;
  position: sticky; top: 0; background: var(--bg); padding: 8px 0; z-index: 2;
  border-bottom: 1px solid var(--line); }
.controls input[type=search] { width: 340px; max-width: 100%; padding: 5px 8px;
  font: inherit; border: 1px solid var(--line); border-radius: 6px; }
.controls select { padding: 5px 8px; font: inherit; border: 1px solid var(--line);
  border-radius: 6px; background: var(--bg); }
#shown { color: var(--muted); }
table.runs { border-collapse: collapse; width: 100%; margin-top: 4px; }
table.runs th { position: sticky; top: 47px; background: var(--head); text-align: left;
  font-weight: 600; white-space: nowrap; border-bottom: 1px solid var(--line); padding: 0;
  z-index: 1; }
table.runs th button { all: unset; display: block; padding: 6px 8px; cursor: pointer;
  width: 100%; box-sizing: border-box; }
table.runs th button:focus-visible { outline: 2px solid var(--fixed); }
table.runs th[aria-sort=ascending] button::after { content: " \\25B2"; font-size: 10px; }
table.runs th[aria-sort=descending] button::after { content: " \\25BC"; font-size: 10px; }
table.runs td { padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.runs tbody tr:hover { background: #f6f8fa; }
table.runs td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.path { word-break: break-all; min-width: 220px; }
td.note { word-break: break-word; max-width: 380px; color: var(--muted); }
td.note.err { color: var(--error); }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff;
  font-size: 12px; font-weight: 600; white-space: nowrap; }
.b-clean { background: var(--clean); } .b-fixed { background: var(--fixed); }
.b-fixable { background: var(--fixable); } .b-unfixable { background: var(--unfixable); }
.b-error { background: var(--error); } .b-duplicate { background: var(--duplicate); }
details summary { cursor: pointer; white-space: nowrap; }
details ul { margin: 4px 0 0; padding-left: 16px; text-align: left; white-space: normal;
  width: 340px; max-width: 28vw; }
details li { margin-bottom: 4px; word-break: break-word; }
details li code { word-break: break-all; }
tr[hidden] { display: none; }
#more { font: inherit; padding: 5px 12px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--head); cursor: pointer; }
.empty { color: var(--muted); padding: 16px 8px; }
"""

NOSCRIPT_CSS = "table.runs tr[hidden] { display: table-row; } #more, .controls { display: none; }"

SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("runs");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var query = document.getElementById("q");
  var status = document.getElementById("status");
  var shown = document.getElementById("shown");
  var empty = document.getElementById("empty");
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  var more = document.getElementById("more");
  var page = parseInt(table.getAttribute("data-page"), 10) || 1000;
  var limit = page;  // rows laid out at most: a long table is shown a page at a time
  rows.forEach(function (row) {  // the full path and sha256 are in the title
    row.searchText = (row.textContent + " " + row.cells[1].title).toLowerCase();
  });
  var view = {q: "", status: "", sort: "", dir: "asc"};

  function value(row, index, kind) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-v");
    if (raw === null) { raw = cell.textContent; }
    return kind === "num" ? parseFloat(raw) || 0 : raw;
  }
  function sort() {
    var index = -1, kind = "text";
    heads.forEach(function (th, i) {
      if (th.getAttribute("data-key") === view.sort) {
        index = i;
        kind = th.getAttribute("data-kind");
      }
      th.removeAttribute("aria-sort");
    });
    if (index < 0) { return; }
    heads[index].setAttribute("aria-sort", view.dir === "desc" ? "descending" : "ascending");
    var sign = view.dir === "desc" ? -1 : 1;
    var keyed = rows.map(function (row, i) { return [value(row, index, kind), i, row]; });
    keyed.sort(function (a, b) {
      var c = kind === "num" ? a[0] - b[0] : collator.compare(a[0], b[0]);
      return c !== 0 ? sign * c : a[1] - b[1];
    });
    var fragment = document.createDocumentFragment();
    keyed.forEach(function (k) { fragment.appendChild(k[2]); });
    body.appendChild(fragment);
  }
  function filter() {
    var words = view.q.toLowerCase().split(/\\s+/).filter(Boolean);
    var count = 0;
    Array.prototype.forEach.call(body.rows, function (row) {  // in the order shown
      var ok = (!view.status || row.getAttribute("data-status") === view.status) &&
        words.every(function (w) { return row.searchText.indexOf(w) >= 0; });
      if (ok) { count += 1; }
      row.hidden = !ok || count > limit;
    });
    var matching = count === rows.length ? rows.length + " archives"
      : count + " of " + rows.length + " archives match";
    shown.textContent = count > limit ? matching + ", the first " + limit + " shown" : matching;
    more.hidden = count <= limit;
    empty.hidden = count !== 0;
    document.querySelectorAll("button.card").forEach(function (card) {
      card.classList.toggle("on", card.getAttribute("data-status") === view.status);
    });
  }
  function remember() {
    var parts = [];
    ["q", "status", "sort", "dir"].forEach(function (k) {
      if (view[k] && !(k === "dir" && !view.sort)) {
        parts.push(k + "=" + encodeURIComponent(view[k]));
      }
    });
    try {
      history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname);
    } catch (e) { /* a browser that refuses it for file: pages */ }
  }
  function apply() { sort(); filter(); remember(); }

  heads.forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var key = th.getAttribute("data-key");
      if (view.sort === key) { view.dir = view.dir === "asc" ? "desc" : "asc"; }
      else {  // numbers start with the largest (slowest, biggest), the rest from the top
        view.sort = key;
        var biggest = th.getAttribute("data-kind") === "num" && key !== "n" && key !== "status";
        view.dir = biggest ? "desc" : "asc";
      }
      apply();
    });
  });
  query.addEventListener("input", function () { view.q = query.value; filter(); remember(); });
  more.addEventListener("click", function () { limit += page; filter(); });
  status.addEventListener("change", function () {
    view.status = status.value; filter(); remember();
  });
  document.querySelectorAll("button.card").forEach(function (card) {
    card.addEventListener("click", function () {
      var s = card.getAttribute("data-status");
      view.status = view.status === s ? "" : s;
      status.value = view.status;
      filter(); remember();
    });
  });
  document.querySelectorAll("button.code").forEach(function (button) {
    button.addEventListener("click", function () {
      view.q = button.textContent; query.value = view.q; filter(); remember();
      table.scrollIntoView();
    });
  });

  location.hash.replace(/^#/, "").split("&").forEach(function (part) {
    var eq = part.indexOf("=");
    if (eq < 0) { return; }
    var key = part.slice(0, eq), val;
    try { val = decodeURIComponent(part.slice(eq + 1).replace(/\\+/g, " ")); } catch (e) { return; }
    if (key in view) { view[key] = val; }
  });
  if (view.dir !== "desc") { view.dir = "asc"; }
  var known = Array.prototype.some.call(status.options, function (o) {
    return o.value === view.status;
  });
  if (!known) { view.status = ""; }
  query.value = view.q;
  status.value = view.status;
  document.body.classList.add("js");
  apply();
})();
"""


def _text(value) -> str:
    """Printable, valid UTF-8 text, HTML-escaped (quotes too: fit for attributes)."""
    text = "" if value is None else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a path's undecodable bytes (surrogateescape)
        text = text.encode("utf-8", "surrogateescape" if _escapable(text) else "replace")
        text = text.decode("utf-8", "replace")
    return html.escape(_UNSAFE.sub("\ufffd", text), quote=True)


def _escapable(text: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number and abs(number) != float("inf") else 0.0


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _rule(code: str) -> str:
    """The rule's name and summary, when this is one of ours."""
    try:
        from .registry import by_code

        rule = by_code(code).RULE
        return f"{rule.name}: {rule.summary}"
    except Exception:  # noqa: BLE001 - an unknown code (another version's report) is shown bare
        return ""


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _common_folder(records: list[dict]) -> str:
    """The folder (ending in /) every archive is under, shown once above the table;
    "" when there is none."""
    paths = [str(r.get("path") or "") for r in records]
    prefix = os.path.commonprefix(paths) if paths else ""
    return prefix[: prefix.rfind("/") + 1] if len(prefix) > 1 else ""


def _short(path, prefix: str) -> str:
    path = str(path or "")
    return path[len(prefix) :] if prefix and path.startswith(prefix) else path


def _row(number: int, record: dict, prefix: str = "", hidden: bool = False) -> str:
    status = str(record.get("status") or "error")
    rank = STATUSES.index(status) if status in STATUSES else len(STATUSES)
    codes = [str(code) for code in record.get("codes") or ()]
    changes = [c for c in record.get("changes") or () if isinstance(c, dict)]
    size, seconds = _number(record.get("bytes")), _number(record.get("seconds"))
    if record.get("error"):
        note, note_class = str(record["error"]), "note err"
    elif status == "duplicate":
        note = f"same sha256 as {_short(record.get('duplicate_of'), prefix)}"
        note_class = "note"
    else:
        note, note_class = str(record.get("output") or ""), "note"
    if changes:
        items = "".join(
            f"<li><code>{_text(c.get('code'))}</code> <code>{_text(c.get('location'))}</code> "
            f"{_text(c.get('description'))}</li>"
            for c in changes[:MAX_CHANGES_SHOWN]
        )
        if len(changes) > MAX_CHANGES_SHOWN:
            items += f"<li>... {len(changes) - MAX_CHANGES_SHOWN} more in the report</li>"
        changed = f"<details><summary>{len(changes)}</summary><ul>{items}</ul></details>"
    else:
        changed = "0"
    sha = str(record.get("sha256") or "")
    return (
        f'<tr data-status="{_text(status)}"{" hidden" if hidden else ""}>'
        f'<td class="num">{number}</td>'
        f'<td class="path mono" title="{_text(record.get("path"))} sha256 {_text(sha)}">'
        f"{_text(_short(record.get('path'), prefix))}</td>"
        f'<td data-v="{rank}"><span class="badge b-{_text(status)}">{_text(status)}</span></td>'
        f"<td>{_text(record.get('saved_with') or '')}</td>"
        f"<td>{_text(record.get('target') or '')}</td>"
        f'<td class="mono">{_text(" ".join(codes))}</td>'
        f'<td class="num" data-v="{len(changes)}">{changed}</td>'
        f'<td class="num" data-v="{size:.0f}">{_size(size)}</td>'
        f'<td class="num" data-v="{seconds!r}">{seconds:.2f}</td>'
        f'<td class="{note_class}">{_text(note)}</td>'
        "</tr>"
    )


def _summary(records: list[dict], summary, prefix: str = "") -> str:
    counts = dict(getattr(summary, "counts", None) or {})
    total = sum(counts.values())
    cards = [f'<div class="card total"><b>{total}</b><span>archives</span></div>']
    for status in [*STATUSES, *sorted(set(counts) - set(STATUSES))]:
        if counts.get(status):
            cards.append(
                f'<button type="button" class="card s-{_text(status)}"'
                f' data-status="{_text(status)}" title="show only {_text(status)}">'
                f"<b>{counts[status]}</b>"
                f"<span>{_text(status)}</span></button>"
            )
    resumed = getattr(summary, "resumed", 0)
    if resumed:
        cards.append(f'<div class="card"><b>{resumed}</b><span>done before (--resume)</span></div>')
    codes = getattr(summary, "codes", None) or {}
    code_rows = "".join(
        f'<tr><td><button type="button" class="code mono" title="show archives with it">'
        f'{_text(code)}</button></td><td class="num">{n}</td>'
        f'<td class="why">{_text(_rule(str(code)))}</td></tr>'
        for code, n in sorted(codes.items(), key=lambda item: (-item[1], str(item[0])))
    )
    slowest = getattr(summary, "slowest", None) or []
    slow_rows = "".join(
        f'<tr><td class="num">{_number(seconds):.2f} s</td>'
        f'<td class="mono">{_text(_short(path, prefix))}</td></tr>'
        for seconds, path in slowest
    )
    parts = [
        f'<section class="panel status"><h2>Status</h2><div class="cards">{"".join(cards)}</div>'
    ]
    total_bytes = sum(_number(r.get("bytes")) for r in records)
    total_seconds = sum(_number(r.get("seconds")) for r in records)
    parts.append(
        f'<p class="sub">{_size(total_bytes)} read, {total_seconds:.1f} s of work'
        f"{_settings(records)}</p></section>"
    )
    parts.append(
        '<section class="panel"><h2>Codes</h2>'
        + (f'<table class="small">{code_rows}</table>' if code_rows else "<p>none</p>")
        + "</section>"
    )
    parts.append(
        '<section class="panel"><h2>Slowest</h2>'
        + (f'<table class="small">{slow_rows}</table>' if slow_rows else "<p>none</p>")
        + "</section>"
    )
    return f'<div class="summary">{"".join(parts)}</div>'


def _settings(records: list[dict]) -> str:
    settings = next((r.get("settings") for r in records if isinstance(r.get("settings"), dict)), {})
    if not settings:
        return ""
    said = ["check only" if settings.get("check_only") else "repaired"]
    if settings.get("keras"):
        said.append(f"for Keras {settings['keras']}")
    if settings.get("only"):
        said.append("only " + ",".join(map(str, settings["only"])))
    if settings.get("skip"):
        said.append("skipping " + ",".join(map(str, settings["skip"])))
    if settings.get("unsafe_fixes"):
        said.append("unsafe fixes on")
    return "; " + _text(" ".join(said))


def render(records: list[dict], summary, page: int = PAGE) -> str:
    """The whole page: summary, then a table with a row per report line (the
    first `page` rows shown, the others a click away: laying out tens of
    thousands of rows takes a browser many seconds)."""
    heads = "".join(
        f'<th data-key="{key}" data-kind="{kind}" scope="col">'
        f'<button type="button" title="sort by {html.escape(label.lower())}">'
        f"{html.escape(label)}</button></th>"
        for key, label, kind in COLUMNS
    )
    prefix = _common_folder(records)
    rows = "\n".join(
        _row(number, record, prefix, hidden=number > page)
        for number, record in enumerate(records, 1)
    )
    under = f' Archives under <code id="under">{_text(prefix)}</code>.' if prefix else ""
    options = "".join(
        f'<option value="{status}">{status}</option>'
        for status in STATUSES
        if any(r.get("status") == status for r in records)
    )
    shown = f"{len(records)} archives" + (
        f", the first {page} shown" if len(records) > page else ""
    )
    more = "" if len(records) > page else " hidden"
    policy = (
        f"default-src 'none'; script-src {_sha256_source(SCRIPT)}; "
        f"style-src {_sha256_source(CSS)} {_sha256_source(NOSCRIPT_CSS)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>kerasrepair batch: {len(records)} archives</title>
<style>{CSS}</style>
</head>
<body>
<h1>kerasrepair batch</h1>
<p class="sub">{len(records)} archives, kerasrepair {html.escape(__version__)}.
Click a column to sort, a status or a code to filter.{under}</p>
{_summary(records, summary, prefix)}
<div class="controls">
<input type="search" id="q" placeholder="Filter: path, code, error... (all words)"
 aria-label="Filter the archives" autocomplete="off">
<select id="status" aria-label="Status"><option value="">every status</option>{options}</select>
<span id="shown">{shown}</span>
</div>
<table class="runs" id="runs" data-page="{page}">
<thead><tr>{heads}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="empty" id="empty" hidden>No archive matches.</p>
<p><button type="button" id="more"{more}>Show {page} more</button></p>
<noscript><style>{NOSCRIPT_CSS}</style></noscript>
<script>{SCRIPT}</script>
</body>
</html>
"""


def write(path: str | os.PathLike, records: list[dict], summary) -> Path:
    """Write the page to `path`, atomically (a temporary file renamed over it)."""
    from .writer import write_text_atomically

    return write_text_atomically(path, render(records, summary))
