"""The annotation page in a real headless Chromium: answer, reload, download, import."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from creative_eval.people import annotate
from creative_eval.people.humans import load_labels

from test_annotate import make_stories

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900"]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} and {CHROMEDRIVER} "
                "(apt-get install chromium chromium-driver; .ci/run does this as root)", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One Chromium for the module, with a fresh profile and a known download folder; never a driver download."""
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('profile')}"]:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.implicitly_wait(2)
    yield driver, downloads
    driver.quit()


def wait_for(path_glob: str, folder: Path, timeout: float = 10.0) -> Path:
    """The downloaded file once Chromium has finished it: it names the file (empty) before the data lands."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = any(folder.glob("*.crdownload"))
        done = [p for p in folder.glob(path_glob) if not p.name.endswith(".crdownload") and p.stat().st_size]
        if done and not busy:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {path_glob} downloaded into {folder}")


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def test_answer_reload_download_and_import(browser, tmp_path):
    driver, downloads = browser
    pack = tmp_path / "pack"
    key = annotate.export(make_stories(tmp_path / "s.jsonl", n=4, conditions=("baseline", "induced")), pack, seed=5)
    driver.get((pack / annotate.PAGE_FILE).resolve().as_uri())

    assert not driver.find_element(By.ID, "task").is_displayed()
    driver.find_element(By.ID, "start-button").click()
    assert "rater id" in text(driver, "start-error")
    driver.find_element(By.ID, "rater-input").send_keys("ann-1", Keys.ENTER)
    assert text(driver, "progress-text") == "0 of 4 answered" and text(driver, "position") == "Pair 1 of 4"

    driver.find_element(By.ID, "choose-A").click()  # pair 1: click; moves on to pair 2
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("b")  # pair 2: key
    body.send_keys("c")  # pair 3: comment, then leave the box and call a tie
    driver.find_element(By.ID, "comment").send_keys("both tell the same, tbh", Keys.ESCAPE)
    body.send_keys("t")
    assert text(driver, "progress-text") == "3 of 4 answered" and text(driver, "position") == "Pair 4 of 4"

    # Chromium hands localStorage writes to its store in batches, a moment after setItem; a reload in the same
    # millisecond (not a person's) can come before that on a loaded machine
    time.sleep(1.5)
    driver.refresh()  # autosave: nothing lost, the rater is not asked again
    assert text(driver, "progress-text") == "3 of 4 answered" and text(driver, "rater-label") == "Rater: ann-1"
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_LEFT)
    assert text(driver, "position") == "Pair 3 of 4"
    assert driver.find_element(By.ID, "choose-tie").get_attribute("aria-pressed") == "true"
    assert driver.find_element(By.ID, "comment").get_attribute("value") == "both tell the same, tbh"

    driver.find_element(By.ID, "download-json").click()
    driver.find_element(By.ID, "download-csv").click()
    downloaded = [wait_for(f"annotations-{key.pack_id}-ann-1.{ext}", downloads) for ext in ("json", "csv")]
    assert len(json.loads(downloaded[0].read_text())["answers"]) == 3

    out = tmp_path / "human.jsonl"
    annotate.import_results(pack, downloaded, out)  # the CSV repeats the JSON: imported once
    labels = load_labels(out)
    expected = [annotate.canonical(i.story_a, i.story_b, c) for i, c in zip(key.items, ["A", "B", "tie"])]
    assert [(h.story_a, h.story_b, h.choice) for h in labels] == expected
    assert [h.comment for h in labels] == ["", "", "both tell the same, tbh"] and {h.rater for h in labels} == {"ann-1"}
