"""A screenshot of the attention explorer on a trained run, for the README.

    python bench/explorer_screenshot.py runs/multi30k-de-en-transformer \
        "Zwei Männer spielen Fußball auf einer Wiese." --hover 2 -o docs/explorer.png

Starts `s2s serve RUN` on 127.0.0.1, opens the page in headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium from the dev extra), types the sentence, waits for the
translation and its heatmap, optionally picks a kind/layer/head, hovers output word N (so the
source words it attended are shaded) and saves the window as PNG.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from served import served  # bench/, this script's folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("sentence")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--hover", type=int, default=0, help="output word to hover (0-based)")
    parser.add_argument("--kind", help="cross, encoder-self or decoder-self (default: the page's)")
    parser.add_argument("--layer", help="a layer index or 'all'")
    parser.add_argument("--head", help="a head index, 'mean' or 'all'")
    parser.add_argument("--size", default="1200,1000", help="window width,height")
    args = parser.parse_args()

    profile = tempfile.mkdtemp(prefix="s2s-chromium-")
    try:
        with served([str(args.run)]) as port:
            screenshot(f"http://127.0.0.1:{port}/", profile, args)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {args.output}")


def screenshot(url: str, profile: str, args: argparse.Namespace) -> None:
    """Open the page, translate the sentence, pick the view, hover the word, save the window."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={args.size}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    try:
        until = WebDriverWait(driver, 120).until
        driver.get(url)
        until(lambda d: d.find_element(By.ID, "model").get_attribute("value"))
        box = driver.find_element(By.ID, "source")
        box.clear()
        box.send_keys(args.sentence + "\n")
        until(lambda d: d.find_elements(By.CSS_SELECTOR, "#row-tokens .tok")
              and "forced on" in d.find_element(By.ID, "status").text)
        for select, value in (("kind", args.kind), ("layer", args.layer), ("head", args.head)):
            if value is not None:
                Select(driver.find_element(By.ID, select)).select_by_value(value)
        words = driver.find_elements(By.CSS_SELECTOR, "#row-tokens .tok")
        ActionChains(driver).move_to_element(words[min(args.hover, len(words) - 1)]).perform()
        time.sleep(0.3)  # let the highlight render
        args.output.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(args.output)):
            raise SystemExit(f"could not write {args.output}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
