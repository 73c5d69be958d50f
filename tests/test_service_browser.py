"""The review page of `dictune serve` in headless Chromium (real tiny.en, a real server on a loopback port):
a file upload, and a recording through the browser's MediaRecorder from a fake microphone that plays a
speech clip. docs/serve.png is the upload test's screenshot (DICTUNE_SCREENSHOT=docs/serve.png)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time

import pytest
import yaml
from test_service import start

WAIT_SECONDS = 180  # bound on each browser wait (a decode with tiny.en on 2 busy cores)
RECORD_PAD_SECONDS = 1.5  # recorded beyond the clip's length, so the whole sentence is in the recording


@contextlib.contextmanager
def chromium(*flags: str):
    """A headless Chromium driven by chromedriver; skips when either is not installed."""
    from selenium import webdriver

    browser, driver_exe = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver_exe is None:
        pytest.skip("headless Chromium is not installed: apt-get install -y chromium chromium-driver (make test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900", *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_exe))
    try:
        yield driver
    finally:
        driver.quit()


def _open_page(driver, url: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_SECONDS)
    driver.get(url + "/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#profile option"))
    return wait


def _edit_and_save(driver, wait, text: str) -> str:
    """Replace the editable report with `text`, save it; returns the hypothesis the page had filled in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    edit = driver.find_element(By.ID, "edit")
    hypothesis = edit.get_attribute("value")
    edit.clear()
    edit.send_keys(text)
    driver.find_element(By.ID, "save").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "Saved correction #1"))
    return hypothesis


@pytest.mark.integration
def test_review_page_in_headless_chromium_upload_see_terms_edit_save(tmp_path, tiny_en_dir, speech_clips):
    from selenium.webdriver.common.by import By

    from pipeline.service.store import read_corrections

    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("pneumonia\npleural effusion\nspleen\n")
    running = start(tmp_path, tiny_en_dir, lexicon=lexicon, max_new_tokens=60)  # serve.low_confidence: 0.5
    try:
        with chromium() as driver:
            wait = _open_page(driver, running.url)
            driver.find_element(By.ID, "record").click()  # no microphone here: the page says so
            wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("class") == "error")
            assert "Cannot record" in driver.find_element(By.ID, "status").text
            assert driver.find_element(By.ID, "record").text == "Record"
            driver.find_element(By.ID, "file").send_keys(str(speech_clips[2].path))  # "...pneumonia or pleural effusion."
            driver.find_element(By.ID, "transcribe").click()
            marks = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#report mark.term"))
            assert {m.text.lower() for m in marks} & {"pneumonia", "pleural effusion"}
            low = driver.find_elements(By.CSS_SELECTOR, "#report .lowconf")  # tiny.en's misheard words, not all
            words = driver.find_element(By.ID, "report").text.split()
            assert 1 <= len(low) < len(words) and all(w.text.strip() for w in low)
            assert all(float(re.search(r"probability ([0-9.]+)", w.get_attribute("title"))[1]) <= 0.5 for w in low)
            assert driver.find_elements(By.CSS_SELECTOR, "#legend .lowconf")
            hypothesis = _edit_and_save(driver, wait, "No evidence of pneumonia or pleural effusion.")
            shot = tmp_path / "serve.png"
            driver.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("DICTUNE_SCREENSHOT"):  # docs/serve.png is made this way
                shutil.copy(shot, os.environ["DICTUNE_SCREENSHOT"])
    finally:
        running.close()
    (row,) = read_corrections(tmp_path / "work" / "service" / "corrections.sqlite")
    assert row.corrected == "No evidence of pneumonia or pleural effusion." and row.hypothesis == hypothesis


@pytest.mark.integration
def test_review_page_in_headless_chromium_record_from_a_fake_microphone_edit_save(tmp_path, tiny_en_dir, speech_clips):
    """Record -> MediaRecorder's webm/opus blob -> the server decodes it (ffmpeg) and tiny.en hears the clip's
    words -> edit, save -> the store holds the recording (which decodes to over a second of audio), ingest reads it.
    Along the way: Transcribe is refused while recording, and a file chosen after the transcription is not what
    Save stores."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    from pipeline.audio import SAMPLE_RATE, load_mono
    from pipeline.cli import main
    from pipeline.manifest import read_manifest
    from pipeline.service.store import DB_NAME, read_corrections

    clip = speech_clips[2]  # 16 kHz mono 16-bit PCM wav: what Chromium's fake capture device reads
    running = start(tmp_path, tiny_en_dir, max_new_tokens=60)
    fake_microphone = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                       f"--use-file-for-fake-audio-capture={clip.path}%noloop")  # fmt: skip
    try:
        with chromium(*fake_microphone) as driver:
            wait = _open_page(driver, running.url)
            record = driver.find_element(By.ID, "record")
            record.click()
            wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "Recording"))
            driver.find_element(By.ID, "transcribe").click()  # refused while the recording runs
            assert driver.find_element(By.ID, "status").text == "Stop the recording first."
            time.sleep(len(clip.audio) / SAMPLE_RATE + RECORD_PAD_SECONDS)  # the fake microphone plays in real time
            record.click()
            wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "Recorded"))
            name = driver.find_element(By.ID, "status").text.split()[-1]
            assert re.fullmatch(r"recording\.(webm|ogg)", name), name
            driver.find_element(By.ID, "transcribe").click()
            wait.until(lambda d: d.find_element(By.ID, "report").text.strip()
                       or "error" in d.find_element(By.ID, "status").get_attribute("class"))  # fmt: skip
            assert "error" not in driver.find_element(By.ID, "status").get_attribute("class"), \
                driver.find_element(By.ID, "status").text  # fmt: skip
            heard = set(re.findall(r"[a-z]+", driver.find_element(By.ID, "report").text.lower()))
            spoken = {w for w in re.findall(r"[a-z]+", clip.text.lower()) if len(w) > 3}
            assert heard & spoken, "tiny.en heard none of the clip's words in the recording"
            driver.find_element(By.ID, "file").send_keys(str(speech_clips[3].path))  # chosen, not transcribed:
            hypothesis = _edit_and_save(driver, wait, "No evidence of pneumonia or pleural effusion.")  # not saved
    finally:
        running.close()
    store = tmp_path / "work" / "service"
    (row,) = read_corrections(store / DB_NAME)
    assert row.corrected == "No evidence of pneumonia or pleural effusion." and row.hypothesis == hypothesis
    assert row.audio_path.endswith((".webm", ".ogg"))  # the recording, not the file chosen after it
    assert len(load_mono(store / row.audio_path)) / SAMPLE_RATE > 1.0
    config = tmp_path / "ingest.yaml"  # and ingest takes it as training data
    config.write_text(yaml.safe_dump({"name": "c", "work_dir": str(tmp_path / "round2"),
                                      "ingest": {"sources": [{"name": "train", "path": str(store / DB_NAME)}]}}))  # fmt: skip
    assert main(["ingest", str(config)]) == 0
    (record,) = read_manifest(tmp_path / "round2" / "ingest" / "train.jsonl")
    assert record.text == row.corrected and record.duration > 1.0
