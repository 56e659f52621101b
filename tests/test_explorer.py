"""The attention explorer in a real browser (headless Chromium driven by Selenium).

Without Chromium, chromedriver or selenium these tests are skipped with the reason, except
under CI (CI=true), where they must run: .ci/run installs Debian's chromium and chromium-driver.
"""

import os
import shutil
import tempfile

import numpy as np
import pytest

pytest.importorskip("fastapi")

from s2s.serve.app import create_app, load_models  # noqa: E402
from serving import call, live_server  # noqa: E402

SENTENCE = "Saturday, 4 July 1998"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.path.exists(path):
            return f"{path} not found (Debian: apt-get install chromium chromium-driver; needs {package})"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="s2s-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1200,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(trained_run, transformer_run, captioning_run):
    runs = [trained_run, transformer_run, captioning_run]
    with live_server(create_app(load_models(runs, device="cpu"))) as where:
        yield where


def wait(driver, condition, seconds=15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def chips(driver, axis):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, f"#{axis}-tokens .tok")


def hover(driver, element):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(element).perform()


def choose(driver, select_id, value):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


def open_sentence(driver, server, model):
    from selenium.webdriver.common.by import By

    driver.get(f"http://{server[0]}:{server[1]}/")
    wait(driver, lambda d: d.find_element(By.ID, "model").get_attribute("value"))
    choose(driver, "model", model)
    box = driver.find_element(By.ID, "source")
    box.clear()
    box.send_keys(SENTENCE + "\n")
    wait(driver, lambda d: chips(d, "row") and "forced on" in d.find_element(By.ID, "status").text)


def drawn_pixels(driver) -> int:
    """How many pixels of the heatmap canvas are not white."""
    return driver.execute_script("""
        const c = document.getElementById('heatmap');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) n++;
        return n;""")


def shown_weights(driver, axis) -> tuple[np.ndarray, int]:
    """The data-weight of each chip of `axis`, and the index of the one marked peak."""
    found = chips(driver, axis)
    weights = np.array([float(c.get_attribute("data-weight")) for c in found])
    peaks = [i for i, c in enumerate(found) if "peak" in c.get_attribute("class").split()]
    assert len(peaks) == 1
    return weights, peaks[0]


def test_type_a_sentence_see_the_heatmap_and_hover_words(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    open_sentence(browser, server, "tiny-transformer")
    status, hyps = call(server, "POST", "/v1/translate", {"model": "tiny-transformer", "text": [SENTENCE],
                                                          "n_best": 5, "beam": 5})
    status, record = call(server, "POST", "/v1/attention", {
        "model": "tiny-transformer", "text": SENTENCE, "target": hyps["translations"][0]["hypotheses"][0]["text"]})
    weights = np.array(record["weights"])  # (L, H, T, S)
    canvas = browser.find_element(By.ID, "heatmap")
    assert int(canvas.get_attribute("data-rows")) == len(record["tgt_tokens"])
    assert int(canvas.get_attribute("data-cols")) == len(record["src_tokens"])
    assert drawn_pixels(browser) > 100 * weights.shape[2] * weights.shape[3] // 4
    assert [c.text for c in chips(browser, "col")] == record["src_tokens"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#hypotheses li")) == len(
        hyps["translations"][0]["hypotheses"])

    kinds = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#kind option")]
    assert kinds == ["cross", "encoder-self", "decoder-self"]  # the kinds the record holds

    # the default view: the alignment layer (0 of 2), heads averaged
    row = 2
    hover(browser, chips(browser, "row")[row])
    shown, peak = shown_weights(browser, "col")
    expected = weights[0].mean(0)[row]
    np.testing.assert_allclose(shown, expected, rtol=1e-4, atol=1e-6)
    assert peak == int(expected.argmax())

    # another head: the highlighted source tokens follow it
    choose(browser, "head", "1")
    hover(browser, chips(browser, "row")[0])
    hover(browser, chips(browser, "row")[row])
    shown, peak = shown_weights(browser, "col")
    np.testing.assert_allclose(shown, weights[0, 1, row], rtol=1e-4, atol=1e-6)
    assert peak == int(weights[0, 1, row].argmax())

    # hovering a source token shades the output tokens that attended it
    hover(browser, chips(browser, "col")[3])
    shown, _ = shown_weights(browser, "row")
    np.testing.assert_allclose(shown, weights[0, 1, :, 3], rtol=1e-4, atol=1e-6)

    choose(browser, "layer", "all")
    choose(browser, "head", "all")
    assert canvas.get_attribute("data-panels") == "4"
    path = tmp_path / "explorer.png"
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000
    png = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        document.getElementById('heatmap').toBlob((b) => b.arrayBuffer().then(
            (a) => done([b.type, b.size, Array.from(new Uint8Array(a.slice(0, 4)))])), 'image/png');""")
    assert png[0] == "image/png" and png[1] > 1000 and png[2] == [0x89, 0x50, 0x4E, 0x47]


def test_a_hypothesis_or_a_target_of_ones_own_is_forced(browser, server):
    from selenium.webdriver.common.by import By

    open_sentence(browser, server, "tiny")
    assert [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#kind option")] == ["cross"]
    items = browser.find_elements(By.CSS_SELECTOR, "#hypotheses li")
    status, hyps = call(server, "POST", "/v1/translate", {"model": "tiny", "text": [SENTENCE],
                                                          "n_best": 5, "beam": 5})
    assert [i.find_element(By.CLASS_NAME, "text").text for i in items] == [
        h["text"] or "(empty)" for h in hyps["translations"][0]["hypotheses"]]
    second = items[1].find_element(By.CLASS_NAME, "text").text
    items[1].click()
    wait(browser, lambda d: "chosen" in d.find_elements(By.CSS_SELECTOR, "#hypotheses li")[1]
         .get_attribute("class"))
    wait(browser, lambda d: d.find_element(By.ID, "status").text.endswith(f'"{second}"'))
    target = browser.find_element(By.ID, "target")
    target.send_keys("1998-07-04")
    browser.find_element(By.ID, "force").click()
    wait(browser, lambda d: d.find_element(By.ID, "status").text.endswith('"1998-07-04"'))
    status, record = call(server, "POST", "/v1/attention", {"model": "tiny", "text": SENTENCE,
                                                            "target": "1998-07-04"})
    assert [c.text for c in chips(browser, "row")] == record["tgt_tokens"]
    hover(browser, chips(browser, "row")[1])
    shown, peak = shown_weights(browser, "col")
    np.testing.assert_allclose(shown, np.array(record["weights"])[0, 0, 1], rtol=1e-4, atol=1e-6)


def test_caption_an_image_and_hover_its_words(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    from s2s.data.shapes import generate

    picture = tmp_path / "shapes.png"
    next(iter(generate("test", 1, seed=3)))["image"].save(picture)
    browser.get(f"http://{server[0]}:{server[1]}/")
    wait(browser, lambda d: d.find_element(By.ID, "model").get_attribute("value"))
    choose(browser, "model", "tiny-shapes")
    assert browser.find_element(By.ID, "source-form").is_displayed() is False
    browser.find_element(By.ID, "image").send_keys(str(picture))
    browser.find_element(By.ID, "caption").click()
    wait(browser, lambda d: chips(d, "row"))
    from serving import multipart

    body, headers = multipart({"model": "tiny-shapes", "n_best": "3"},
                              {"image": ("a.png", picture.read_bytes())})
    status, answer = call(server, "POST", "/v1/caption", body, headers)
    best = answer["hypotheses"][0]["attention"]
    assert [c.text for c in chips(browser, "row")] == best["tokens"]
    hover(browser, chips(browser, "row")[1])
    overlay = browser.find_element(By.ID, "overlay")
    assert overlay.is_displayed() and not browser.find_element(By.ID, "heatmap").is_displayed()
    title = browser.execute_script("return window.s2sExplorer.current().rows[1]")
    assert title == best["tokens"][1]
    shown = browser.execute_script("return window.s2sExplorer.current().matrix[1]")
    np.testing.assert_allclose(shown, np.array(best["weights"])[0, 0, 1], rtol=1e-5)
