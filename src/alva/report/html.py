"""A self-contained HTML report of a run folder (``alva report RUN_DIR``, and ``runs/demo/report.html``).

:func:`build_report` makes one ``<section>`` per folder (:mod:`alva.report.folder`), the run folder first and its
sub-folders (a folder of runs, or the parts of ``runs/demo``) in the order the run made them. Each JSON file is
shown by the reader of its ``"kind"`` (:mod:`alva.report.kinds`): results of attacks and evaluations, model and
generator cards, training settings and logs, rounds; every ``*.png`` is embedded as a base64 ``data:`` URI. The
page needs no network and no JavaScript: the CSS is inline, every text is escaped, long settings tables are
folded in ``<details>``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from pathlib import Path

from alva.report.content import PNG_SIGNATURE, Image, Section, Table, fmt, is_number, slug
from alva.report.folder import folder_section, run_folders
from alva.tracking.files import atomic_write_bytes

__all__ = ["PNG_SIGNATURE", "Image", "Section", "Table", "build_report", "fmt", "folder_section", "render",
           "write_report"]


def build_report(run_dir: str | os.PathLike, *, depth: int = 2, title: str | None = None) -> tuple[str, list[Section]]:
    """The HTML page of ``run_dir`` (and its sub-folders down to ``depth``), and its sections."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no run folder {root}")
    sections = []
    ids: set[str] = set()
    for folder, rel in run_folders(root, depth):
        section = folder_section(folder, rel)
        if section.empty:
            continue
        base = "summary" if rel == "." else slug(rel)
        section.id, i = base, 2
        while section.id in ids:
            section.id, i = f"{base}-{i}", i + 1
        ids.add(section.id)
        sections.append(section)
    if not sections:
        raise ValueError(f"{root} holds no run files alva recognises (summary.json, result.json, model.json, "
                         "metrics.jsonl, rounds.json, profile.json, *.png)")
    return render(sections, title=title or root.resolve().name, root=root), sections


def render(sections: list[Section], *, title: str, root: Path | None = None) -> str:
    """The page: a header (run name, dates, command), a table of contents, one ``<section>`` per entry."""
    e = html.escape
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    finished = max(s.modified for s in sections)
    ran = _dt.datetime.fromtimestamp(finished, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if finished else "?"
    # The command that made the run folder, as its own files record it (empty when they do not say).
    command = sections[0].command if sections[0].path == "." else ""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>alva report: {e(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           "<header>", f"<h1>alva report: {e(title)}</h1>", '<dl class="meta">']
    if root is not None:
        out.append(f"<dt>folder</dt><dd><code>{e(str(root))}</code></dd>")
    out.append(f"<dt>last written</dt><dd>{e(ran)}</dd><dt>report made</dt><dd>{e(now)}</dd>")
    if command:
        out.append(f"<dt>command</dt><dd><code>{e(command)}</code></dd>")
    out += ["</dl>", '<nav><h2>Contents</h2><ol>']
    out += [f'<li><a href="#{e(s.id)}">{e(s.title)}</a> <span class="kind">{e(s.kind)}</span></li>' for s in sections]
    out += ["</ol></nav>", "</header>", "<main>"]
    for s in sections:
        out += [f'<section id="{e(s.id)}">', f"<h2>{e(s.title)} <span class=\"kind\">{e(s.kind)}</span></h2>"]
        out += [f"<p>{e(t)}</p>" for t in s.text]
        if s.command and s.command != command:
            out.append(f'<p class="command">command: <code>{e(s.command)}</code></p>')
        for t in s.tables:
            out.append(_table_html(t))
        if s.images:
            out.append('<div class="figures">')
            for img in s.images:
                uri = "data:image/png;base64," + base64.b64encode(img.png).decode("ascii")
                out.append(f'<figure><img src="{uri}" alt="{e(img.name or img.caption)}">'
                           f"<figcaption>{e(img.caption)}</figcaption></figure>")
            out.append("</div>")
        if s.files:
            out.append(f'<p class="files">files: {e(", ".join(s.files))}</p>')
        out.append("</section>")
    out += ["</main>", f"<footer>written by alva {e(_version())}; self-contained: images are embedded, "
            "nothing is fetched.</footer>", "</body>", "</html>", ""]
    return "\n".join(out)


def _table_html(table: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f'<td class="{"num" if is_number(c) else "txt"}">{e(fmt(c))}</td>' for c in row)
                   + "</tr>" for row in table.rows)
    if table.folded:  # closed until the reader opens it; the caption says what is inside
        return (f'<details class="tw"><summary>{e(table.caption)} ({len(table.rows)} rows)</summary>'
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>")
    return (f'<div class="tw"><table><caption>{e(table.caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _version() -> str:
    try:
        from alva import __version__
    except ImportError:  # pragma: no cover
        return "?"
    return str(__version__)


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, depth: int = 2,
                 title: str | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``), atomically; return its path."""
    page, _ = build_report(run_dir, depth=depth, title=title)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:0 1.5rem 3rem;color:#1d232a;background:#fff;line-height:1.45}
header{border-bottom:2px solid #d8dee4;margin-bottom:1rem}
h1{font-size:1.7rem;margin:1.2rem 0 .5rem}
h2{font-size:1.3rem;margin:.2rem 0 .6rem}
.kind{font-size:.75rem;font-weight:normal;color:#fff;background:#57606a;border-radius:.6rem;padding:.1rem .5rem;
vertical-align:middle}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:.5rem 0}
dl.meta dt{font-weight:600;color:#57606a}
dl.meta dd{margin:0}
nav ol{columns:2;margin:.3rem 0 1rem}
nav h2{font-size:1rem}
section{border:1px solid #d8dee4;border-radius:.5rem;padding:1rem 1.2rem;margin:1.2rem 0;background:#fafbfc}
.tw{display:inline-block;vertical-align:top;max-width:100%;overflow-x:auto;margin:.6rem 1.5rem .9rem 0}
table{border-collapse:collapse;font-size:.85rem;background:#fff}
caption{text-align:left;font-weight:600;padding:.2rem 0;color:#24292f}
th,td{border:1px solid #d0d7de;padding:.2rem .55rem}
th{background:#eef1f4;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
details.tw summary{cursor:pointer;font-weight:600;font-size:.85rem;color:#24292f;padding:.2rem 0}
details.tw[open] summary{margin-bottom:.3rem}
code{font-size:.82rem;background:#eef1f4;padding:.05rem .3rem;border-radius:.25rem;word-break:break-all}
.figures{display:flex;flex-wrap:wrap;gap:1rem;margin-top:.6rem}
figure{margin:0;background:#fff;border:1px solid #d8dee4;border-radius:.4rem;padding:.5rem;max-width:100%}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.8rem;color:#57606a;max-width:60ch;margin-top:.3rem}
p.files{font-size:.75rem;color:#6e7781}
footer{font-size:.75rem;color:#6e7781;margin-top:2rem}
"""
