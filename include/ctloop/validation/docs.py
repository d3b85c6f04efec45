"""Great Expectations' Data Docs without the internet. GX's site templates load Bootstrap, bootstrap-table,
jQuery, Popper, Font Awesome, the datepicker and Vega from public CDNs; on a machine that cannot reach
them the site is unstyled and its results table empty. ``make setup`` vendors the same packages from the
npm registry (``deploy/datadocs/package.json``, pinned by its lock file); after each build this copies the
files the pages use into ``static/vendor/`` of the site and points the pages at them (Subresource
Integrity attributes go with the CDN URL: they describe the CDN's bytes, not the vendored ones).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# CDN URL in GX's templates -> the same asset in node_modules
ASSETS: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/dist/umd/popper.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "@fortawesome/fontawesome-free/css/all.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/dist/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/build/vega-embed.min.js",
}
# files a vendored asset loads itself, relative to it (Font Awesome's fonts)
COMPANIONS = {"@fortawesome/fontawesome-free/css/all.min.css": ["../webfonts"]}
_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
# GX's logo is fetched from S3 with the data context's id in the query string: offline it fails, online it
# tells someone the docs were opened; an empty image instead
_BEACON = re.compile(r"https://great-expectations-web-assets\.s3[^\"')\s]*")
_SRI = re.compile(r"\s+(?:integrity|crossorigin)=\"[^\"]*\"", re.IGNORECASE)


@dataclass(frozen=True)
class Localized:
    pages: int
    links: int
    vendor: str
    missing: list[str] = field(default_factory=list)  # CDN URLs left as they are (not vendored)

    @property
    def offline(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"offline": self.offline}


def vendor_dir(project_dir: Path) -> Path:
    return project_dir / "deploy" / "datadocs" / "node_modules"


def localize_site(site: Path, vendor: Path) -> Localized:
    """Point every page of the built site at vendored copies of its CDN assets."""
    target = site / "static" / "vendor"
    used: set[str] = set()
    missing: set[str] = set()
    pages = links = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")

        def local(match: re.Match[str], page: Path = page) -> str:
            nonlocal links
            tag = match.group(0)
            for url, rel in ASSETS.items():
                if f'"{url}"' not in tag:
                    continue
                if not (vendor / rel).exists():
                    missing.add(url)
                    return tag
                used.add(rel)
                links += 1
                href = Path(os.path.relpath(target / rel, page.parent)).as_posix()
                return _SRI.sub("", tag.replace(f'"{url}"', f'"{href}"'))
            return tag

        new = _BEACON.sub("data:,", _TAG.sub(local, text))
        if new != text:
            page.write_text(new, encoding="utf-8")
            pages += 1
    for rel in used:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vendor / rel, dest)
        for extra in COMPANIONS.get(rel, []):
            src = (vendor / rel).parent / extra
            if src.is_dir():
                shutil.copytree(src, (dest.parent / extra).resolve(), dirs_exist_ok=True)
    return Localized(pages, links, str(vendor), sorted(missing))


def build_docs(settings: Any) -> tuple[Path, Localized]:
    """Build the Data Docs into ``CTLOOP_HOME/data_docs`` and make them work offline."""
    from ctloop.validation.context import open_context

    open_context(settings).build_data_docs()
    site = settings.data_docs_dir
    return site / "index.html", localize_site(site, vendor_dir(settings.project_dir))
