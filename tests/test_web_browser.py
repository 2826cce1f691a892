"""The web demo in a real headless Chromium: upload a real clip, type prompts, explain with top-k, contrast,
error, example clip; the server's files are removed per session.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (``browser`` extra); skipped
with the reason when any of them is missing. Uses the shipped example clips (ESC-50 excerpts, no data folder
needed). Saves ``docs/demo-screenshot.png``.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from web_fixtures import make_tiny_run

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "demo-screenshot.png"
PROMPTS = ["dog barking", "rain", "church bells", "a cat meowing"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1800"]


def _find(env: str, names: list[str], paths: list[str]) -> str | None:
    if os.environ.get(env):  # an explicit choice: that file or nothing
        return os.environ[env] if Path(os.environ[env]).is_file() else None
    for name in names:
        if shutil.which(name):
            return shutil.which(name)
    return next((p for p in paths if Path(p).is_file()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser_paths():
    pytest.importorskip("selenium", reason="selenium not installed (pip install -e '.[browser]')")
    chromium = _find("LMACZS_CHROMIUM", ["chromium", "chromium-browser", "google-chrome"],
                     ["/usr/lib/chromium/chromium"])
    driver = _find("LMACZS_CHROMEDRIVER", ["chromedriver"], ["/usr/lib/chromium/chromedriver"])
    if not chromium or not driver:
        pytest.skip(f"no headless browser: chromium={chromium}, chromedriver={driver} "
                    "(apt-get install -y chromium chromium-driver)")
    return chromium, driver


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser_paths):
    from lmaczs.explain import ASSETS
    from lmaczs.web import EXAMPLES_DIR

    tmp = tmp_path_factory.mktemp("web")
    run = make_tiny_run(tmp / "run")
    clip = tmp / "user" / "dog.flac"  # the user's own file: uploaded, never removed
    clip.parent.mkdir()
    shutil.copy(EXAMPLES_DIR / "dog.flac", clip)
    examples = tmp / "examples"
    examples.mkdir()
    shutil.copy(EXAMPLES_DIR / "rain.flac", examples / "rain-example.flac")
    # The embedded default model when it is shipped (a meaningful screenshot), else a tiny random one.

    model = (["--clap", "default"] if (ASSETS / "default" / "decoder.json").is_file()
             else ["--clap", "tiny:0", "--decoder", str(run)])
    port = _free_port()
    log = open(tmp / "server.log", "w+")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp / "gradio"),
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmaczs.cli", "serve", *model,
                             "--host", "127.0.0.1", "--port", str(port), "--examples", str(examples)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"the server exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server did not answer within 180 s")
            time.sleep(1)
        yield url, clip, tmp / "gradio", examples
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def driver(browser_paths):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tempfile.mkdtemp(prefix='lmaczs-chromium-')}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # to list every request the page makes
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)
    yield d
    d.quit()


def _set_prompts(d, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = d.find_element(By.CSS_SELECTOR, "#prompts textarea")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)


def _status(d) -> str:
    return d.find_element("css selector", "#status").text


def _set_top_k(d, k: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = d.find_element(By.CSS_SELECTOR, "#topk input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(k), Keys.TAB)


def _images_loaded(d, selectors: list[str]) -> bool:
    return d.execute_script(
        "return arguments[0].every(s => {const i = document.querySelector(s);"
        " return i && i.complete && i.naturalWidth > 600;})", selectors)


def _shown(d, elem_id: str) -> bool:
    """Whether the element is on the page and visible (gradio leaves hidden components out of the DOM)."""
    return any(e.is_displayed() for e in d.find_elements("id", elem_id))


def _answers(gradio_dir: Path) -> list[Path]:
    """The answer folders the demo keeps in gradio's cache."""
    return [p for root in gradio_dir.glob("lmaczs-answers-*") for p in root.iterdir()]


def _wav_behind(d, elem_id: str):
    """Download the WAV a player serves and decode it."""
    import soundfile as sf

    href = d.find_element("css selector", f"#{elem_id} a[data-testid=download-link]").get_attribute("href")
    assert href.startswith("http://127.0.0.1:") and href.endswith(".wav"), href
    with urllib.request.urlopen(href, timeout=30) as r:
        return sf.read(io.BytesIO(r.read()), dtype="float32")


def test_demo_in_a_browser(server, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, clip, gradio_dir, examples = server
    d = driver
    wait = WebDriverWait(d, 150)
    d.get(url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#audio-input input[type=file]"))
    assert "LMAC-ZS" in d.title
    page = d.find_element(By.TAG_NAME, "body").text
    assert "20 MB and 60 s" in page and "rain-example.flac" in page  # limits and the example clip are shown

    # Upload a real ESC-50 clip, type the prompts, explain (baseline gradcam++ by default) with top-3.
    d.find_element(By.CSS_SELECTOR, "#audio-input input[type=file]").send_keys(str(clip))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#audio-input a[data-testid=download-link]"))
    _set_prompts(d, "\n".join(PROMPTS))
    time.sleep(1)  # the prompt list updates the two dropdowns
    assert not _shown(d, "topk-1")  # top-k is off until asked for
    _set_top_k(d, 3)
    d.find_element(By.CSS_SELECTOR, "#explain").click()
    top3 = [f"#topk-figure-{i} img" for i in (1, 2, 3)]
    wait.until(lambda d: _status(d).startswith("Explained") and _images_loaded(
        d, ["#figure img", "#baseline-figure img"] + top3))
    status = _status(d)
    scores = d.find_element(By.CSS_SELECTOR, "#scores").text
    assert all(p in scores for p in PROMPTS) and "%" in scores, scores
    predicted = status.split("'")[1]
    assert predicted in PROMPTS and "Baseline gradcam++" in status and "Top-3: " in status
    assert "/tmp" not in status and str(gradio_dir) not in d.find_element(By.TAG_NAME, "body").text
    # one explanation per top-3 prompt, best first (the first is the prediction); slots 4.. stay hidden
    titles = [d.find_element(By.ID, f"topk-title-{i}").text for i in (1, 2, 3)]
    ranked = [t.split("'")[1] for t in titles]
    assert ranked[0] == predicted and len(set(ranked)) == 3 and set(ranked) <= set(PROMPTS), titles
    assert status.split("Top-3: ")[1].startswith(", ".join(f"'{p}'" for p in ranked))
    assert _shown(d, "topk-heading")
    assert all(_shown(d, f"topk-{i}") for i in (1, 2, 3))
    assert not _shown(d, "topk-4")
    model_sr = None
    for elem_id in ("audio-original", "audio-explanation", "audio-residual", "baseline-explanation",
                    "baseline-residual"):
        samples, sr = _wav_behind(d, elem_id)
        model_sr = model_sr or sr
        assert sr == model_sr and len(samples) == 5 * sr, elem_id  # the whole clip at the model's rate
        assert d.find_element(By.CSS_SELECTOR, f"#{elem_id} #duration").text == "0:05"
    explanation, _ = _wav_behind(d, "audio-explanation")
    residual, _ = _wav_behind(d, "audio-residual")
    assert abs(explanation).max() > 0 and abs(residual).max() > 0
    top = [_wav_behind(d, f"topk-audio-{i}")[0] for i in (1, 2, 3)]
    assert all(len(t) == 5 * model_sr for t in top)
    assert abs(top[0] - explanation).max() < 1e-3  # the top-1 explanation is the main one (no target)
    assert len(_answers(gradio_dir)) == 1  # this answer's files, in a folder of its own

    d.execute_script("window.scrollTo(0, 0)")
    for _ in range(4):  # grow the window until the whole page fits in the viewport (the browser's frame aside)
        inner, page_height = d.execute_script(
            "return [window.innerHeight, document.documentElement.scrollHeight]")
        if inner >= page_height:
            break
        d.set_window_size(1400, d.get_window_size()["height"] + page_height - inner + 20)
        time.sleep(1)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    d.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 50_000

    # Contrastive: explain "rain" rather than the prediction, picked in the dropdowns (top-k off again).
    first_answer = _answers(gradio_dir)[0]
    _set_top_k(d, 0)
    other = next(p for p in PROMPTS if p != predicted)
    for elem_id, choice in (("target", other), ("contrast", predicted)):
        d.find_element(By.CSS_SELECTOR, f"#{elem_id} input").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#{elem_id} li[aria-label='{choice}']"))
        d.find_element(By.CSS_SELECTOR, f"#{elem_id} li[aria-label='{choice}']").click()
    d.find_element(By.CSS_SELECTOR, "#explain").click()
    wait.until(lambda d: f"rather than '{predicted}'" in _status(d))
    assert f"Explained '{other}' rather than '{predicted}'" in _status(d)
    assert "Top-" not in _status(d) and not _shown(d, "topk-1")
    assert not first_answer.exists() and len(_answers(gradio_dir)) == 1  # the previous answer's files are gone
    uploads = [p for p in gradio_dir.rglob("dog.flac")]
    assert len(uploads) == 1, uploads  # gradio's copy of the upload, while the page shows it

    # An error reaches the page as one line, not a stack trace.
    _set_prompts(d, "rain\nrain")
    time.sleep(1)
    d.find_element(By.CSS_SELECTOR, "#explain").click()
    wait.until(lambda d: "duplicate prompts" in _status(d))
    assert _status(d).startswith("Error:") and "Traceback" not in d.find_element(By.TAG_NAME, "body").text

    # A shipped example clip: one click loads it, and it is explained like an upload.
    d.find_element(By.XPATH, "//button[contains(., 'rain-example.flac')]").click()
    _set_prompts(d, "\n".join(PROMPTS))
    time.sleep(1)
    d.find_element(By.CSS_SELECTOR, "#explain").click()
    wait.until(lambda d: "in rain-example.flac" in _status(d))
    assert _status(d).startswith("Explained")
    assert not uploads[0].exists()  # the page moved on to the example: the uploaded copy is removed

    # Offline: the page asked for nothing beyond the demo server.
    import json

    requested = {json.loads(entry["message"])["message"]["params"]["request"]["url"]
                 for entry in d.get_log("performance")
                 if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"}
    web = {u for u in requested if u.startswith(("http:", "https:", "ws:", "wss:"))}  # not chrome:// internals
    external = sorted(u for u in web if not u.startswith(url))
    assert web and not external, external

    # Closing the tab ends the session: its answer goes; the user's file and the examples stay.
    assert len(_answers(gradio_dir)) == 1
    d.get("about:blank")
    deadline = time.monotonic() + 60
    while _answers(gradio_dir) and time.monotonic() < deadline:
        time.sleep(1)
    assert _answers(gradio_dir) == []
    assert clip.is_file() and (examples / "rain-example.flac").is_file()
