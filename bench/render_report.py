"""Render an HTML report to a PNG with headless Chromium, to look at it as a person would.

    python bench/render_report.py outputs/eval/report.html [-o report.png] [--height 2400]
    python bench/render_report.py outputs/eval/report.html --scroll 2400 -o part2.png

Needs a Chromium binary (Debian: ``apt-get install chromium``); the test suite does not.
The page is self-contained, so Chromium is started with networking features off and a
throw-away profile. ``--scroll N`` shows the page from N pixels down (a headless screenshot
always starts at the top, so a copy of the page with its body shifted up is rendered).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str:
    """The first Chromium-like browser on PATH."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"no browser found (tried {', '.join(BROWSERS)}): apt-get install chromium")


def render(page: Path, png: Path, width: int = 1200, height: int = 2400, scroll: int = 0) -> Path:
    """Screenshot of ``page`` at ``width`` x ``height`` CSS pixels, written to ``png``."""
    with tempfile.TemporaryDirectory(prefix="render_report_") as profile:
        if scroll:
            shifted = Path(profile) / "page.html"
            style = f"<style>body {{ margin-top: -{scroll}px !important; }}</style></head>"
            shifted.write_text(page.read_text(encoding="utf-8").replace("</head>", style, 1))
            page = shifted
        command = [
            find_browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png.resolve()}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not png.is_file():
        raise SystemExit(f"chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the report.html to render")
    parser.add_argument("-o", "--out", type=Path, help="PNG path (default: next to the page)")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=2400)
    parser.add_argument("--scroll", type=int, default=0, help="start this many pixels down")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        sys.exit(f"{args.page}: not found")
    png = args.out or args.page.with_suffix(".png")
    render(args.page, png, args.width, args.height, args.scroll)
    print(png)


if __name__ == "__main__":
    main()
