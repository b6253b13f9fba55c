"""The documentation site: it builds with ``mkdocs build --strict`` (no broken link, no missing page, every
generated reference filled in), every internal link of the built site reaches a file, every page carries the
navigation, the README stays a front page, and a headless Chromium renders the home and a reference page."""

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
pytest.importorskip("material", reason="the docs extra: pip install -e '.[docs]'")

#: The sections of the navigation every page shows.
SECTIONS = ("Home", "Install", "Tutorial", "How-to", "Reference", "Explanation", "Results", "Changelog")


class _Links(HTMLParser):
    """The links (``href``, ``src``) of a page, and the text of its primary navigation."""

    def __init__(self):
        super().__init__()
        self.links, self.nav_text, self._nav_depth = [], [], 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for key in ("href", "src"):
            if attributes.get(key):
                self.links.append(attributes[key])
        if tag == "nav" and "md-nav--primary" in (attributes.get("class") or ""):
            self._nav_depth = 1
        elif tag == "nav" and self._nav_depth:
            self._nav_depth += 1

    def handle_endtag(self, tag):
        if tag == "nav" and self._nav_depth:
            self._nav_depth -= 1

    def handle_data(self, data):
        if self._nav_depth and data.strip():
            self.nav_text.append(data.strip())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_the_site_builds_strict_with_every_generated_reference_filled_in(site):
    pages = sorted(site.rglob("index.html"))
    assert len(pages) >= 30
    for page in pages:
        assert "<!-- trainstab:" not in page.read_text(), f"an unfilled marker in {page}"
    options = (site / "reference" / "options" / "index.html").read_text()
    assert "--trainstab-attention-logit-bound" in options and "trainstab_time_limit_seconds" in options
    assert "<code>qk_layernorm</code>" in options  # the --set keys
    checks = (site / "reference" / "checks" / "index.html").read_text()
    assert "<code>attention_forecast</code>" in checks and "max_attention_logit" in checks


def test_every_internal_link_reaches_a_file_and_every_page_has_the_navigation(site):
    broken = []
    for page in sorted(site.rglob("*.html")):
        parser = _Links()
        parser.feed(page.read_text())
        if page.name == "index.html" and page.parent.name != "search":
            assert all(section in parser.nav_text for section in SECTIONS), f"{page}: {parser.nav_text[:12]}"
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("#", "//", "mailto:")) or not parts.path:
                continue
            path = unquote(parts.path)  # the 404 page links from the site's root
            target = (site / path.lstrip("/") if path.startswith("/") else page.parent / path).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)} -> {link}")
    assert broken == []


def test_the_readme_is_a_front_page_whose_links_reach_files():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), target


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no Chromium here")
def test_headless_chromium_renders_the_home_and_a_reference_page_with_the_navigation(site, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    for page in ("index.html", "reference/checks/index.html"):
        url = (site / page).as_uri()
        dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
        assert dom.returncode == 0 and 'class="md-nav md-nav--primary' in dom.stdout
        assert all(section in dom.stdout for section in SECTIONS)
        shot = tmp_path / (page.replace("/", "-") + ".png")
        subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,900", url],
                       capture_output=True, timeout=120, check=True)  # fmt: skip
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
