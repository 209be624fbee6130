"""The server's web page in a real headless Chromium (selenium + chromedriver): choose an image, read the
rendered top-5 bars and compare them with the API's answer; Grad-CAM shown for a checkpoint. With
INCEPTIONNET_SCREENSHOT=path.png the page is also saved there (the README's screenshot)."""

import os
import shutil
import tempfile

import httpx
import pytest
from PIL import Image, ImageDraw

from deploy_models import make_checkpoint
from serving import running_server

pytestmark = pytest.mark.slow

SHAPES = ["circle", "square", "triangle", "star", "moon", "cross", "ring", "heart"]
# Chromium as root in a container without network: no sandbox, no GPU, and none of the background
# fetches (QUIC, component updates, sync) that would stall it.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1000,760")


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths; skips the test, saying why, where they are not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("no chromium + chromedriver here (make test installs them with apt-get when run as root)")
    return browser, driver


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, css: str, count: int = 1, timeout: float = 60):
    """The elements matching `css` once at least `count` of them are displayed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d):
        found = [e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        return found if len(found) >= count else False

    return WebDriverWait(driver, timeout).until(shown)


def test_page_shows_the_top5_of_an_uploaded_image(browser, tmp_path):
    from selenium.webdriver.common.by import By

    model = make_checkpoint(tmp_path / "shapes.pt", classes=SHAPES, logit_scale=8.0)
    image = tmp_path / "circle.png"
    picture = Image.new("RGB", (96, 96), (235, 225, 200))
    ImageDraw.Draw(picture).ellipse((18, 14, 78, 74), fill=(200, 40, 40))
    picture.save(image)
    with running_server(model, log=tmp_path / "log.txt") as (url, _):
        api = httpx.post(f"{url}/predict?topk=5", content=image.read_bytes(),
                         headers={"content-type": "image/png"}).json()["results"][0]["predictions"]
        browser.get(f"{url}/")
        wait_for(browser, "#model")
        assert "inception_cifar (fp32" in browser.find_element(By.ID, "model").text
        browser.find_element(By.ID, "cam").click()
        browser.find_element(By.ID, "file").send_keys(str(image))
        rows = wait_for(browser, "#top5 li", count=5)
        shown = [(r.find_element(By.CLASS_NAME, "class").text, r.find_element(By.CLASS_NAME, "probability").text)
                 for r in rows]
        assert shown == [(p["class"], f"{100 * p['probability']:.1f}%") for p in api]
        overlay = wait_for(browser, "#overlay")[0]
        assert overlay.get_attribute("src").startswith("data:image/png;base64,")
        assert not browser.find_element(By.ID, "error").is_displayed()
        if os.environ.get("INCEPTIONNET_SCREENSHOT"):
            browser.save_screenshot(os.environ["INCEPTIONNET_SCREENSHOT"])


def test_page_says_when_grad_cam_is_unavailable_and_shows_errors(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from inceptionnet.export import export

    model = export(make_checkpoint(tmp_path / "m.pt"), "onnx", tmp_path / "m.onnx")["path"]
    bad = tmp_path / "notes.png"
    bad.write_text("not really a picture")
    with running_server(model, log=tmp_path / "log.txt") as (url, _):
        browser.get(f"{url}/")
        note = wait_for(browser, "#cam-note")[0]
        assert "unavailable" in note.text and "ONNX" in note.text
        assert not browser.find_element(By.ID, "cam").is_enabled()
        browser.find_element(By.ID, "file").send_keys(str(bad))
        error = wait_for(browser, "#error")[0]
        assert error.text.startswith("400") and "not an image" in error.text
