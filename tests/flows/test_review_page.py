"""The review page in a real browser: Debian's chromium, headless, driven by Selenium
through Debian's chromedriver (`make test` installs both), on 127.0.0.1.

Set NARRATOR_SCREENSHOT=docs/review.png to keep a picture of the page (the README's)."""

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.chapter import narrate_chapter
from flows.review.app import review_app
from tests.conftest import local_backend
from tests.flows.test_review import OPTIONS, SIX

pytestmark = pytest.mark.usefixtures("prefect_server")

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root on CI
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def wait(until: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = until()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def test_the_page_plays_a_chunk_marks_it_and_its_redo_lists_the_new_take(
    tmp_path: Path, cache: Path, browser: Any, serve: Callable[[Any], str]
) -> None:
    from selenium.webdriver.common.by import By

    source = tmp_path / "ferry.md"
    # a name the embedded voice misreads: chunk 3 is flagged
    source.write_text(
        SIX.replace(
            "A cold wind came in from the north.", '"It does not need anybody," said Adaeze.'
        )
    )
    out = tmp_path / "out"
    narrate_chapter(str(source), str(out), None, OPTIONS)
    page = serve(review_app(str(out), None, cache))
    view = httpx.get(f"{page}/api/chapter", timeout=30).json()
    chunk = view["chunks"][3]

    browser.get(page)
    wait(lambda: browser.find_elements(By.ID, "chunk-5"))
    # the waveforms arrive after the list, and the list is drawn again with them
    wait(lambda: browser.execute_script("return state.peaks !== null"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#chunks .chunk")
    assert len(rows) == 6
    flagged = [c["index"] for c in view["chunks"] if not c["passed"] or c["flags"]]
    others = [c["index"] for c in view["chunks"] if c["index"] not in flagged]
    assert 3 in flagged and others  # flagged chunks first, each part in reading order
    assert [r.get_attribute("id") for r in rows] == [f"chunk-{i}" for i in flagged + others]
    assert all("flagged" in r.get_attribute("class") for r in rows[: len(flagged)])
    wait(lambda: browser.execute_script("return document.getElementById('player').readyState >= 1"))

    browser.find_element(By.ID, "play-3").click()
    times = []
    for _ in range(8):
        time.sleep(0.15)
        times.append(browser.execute_script("return document.getElementById('player').currentTime"))
    assert all(chunk["start"] <= t <= chunk["end"] for t in times), (times, chunk)
    assert times[-1] > times[0]  # it plays
    wait(lambda: browser.execute_script("return document.getElementById('player').paused"), 10)
    stopped = browser.execute_script("return document.getElementById('player').currentTime")
    assert chunk["end"] <= stopped <= chunk["end"] + 0.5  # at the end of its span

    made = local_backend().requests
    browser.find_element(By.ID, "redo-3").click()
    browser.find_element(By.CSS_SELECTOR, "#chunk-1 .text").click()  # select chunk 1 ...
    browser.find_element(By.TAG_NAME, "body").send_keys("k")  # ... and mark it kept
    assert "on" in browser.find_element(By.ID, "keep-1").get_attribute("class")
    assert browser.find_element(By.ID, "pending").text == "2 marked"
    browser.find_element(By.ID, "apply").click()
    wait(lambda: browser.find_element(By.ID, "job").get_attribute("data-state") == "done", 120)
    listed = wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#takes-3 li"))
    assert [li.get_attribute("data-take") for li in listed] == ["0", "1"]
    assert "(used)" in listed[1].text
    if os.environ.get("NARRATOR_SCREENSHOT"):
        browser.save_screenshot(os.environ["NARRATOR_SCREENSHOT"])

    assert local_backend().requests == made + 1
    metadata = json.loads((out / "metadata.json").read_text())
    assert [c["take"] for c in metadata["chunks"]] == [0, 0, 0, 1, 0, 0]
    takes = {e["index"]: e for e in json.loads((out / "takes.json").read_text())["chunks"]}
    assert takes[3]["chosen"] == 1 and [t["number"] for t in takes[3]["takes"]] == [0, 1]
    assert takes[1]["kept"] and takes[1]["chosen"] == 0
    assert takes[3]["takes"][1]["cache_key"] == metadata["chunks"][3]["cache_key"]
