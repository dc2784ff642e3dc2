"""The web page at / in a real browser (Debian's chromium, headless, driven by selenium through
chromedriver): a chat message typed and sent streams back the reply the API gives, and the
explain view shows the prompt's tokens, each step's candidates and the attention heatmap."""

import shutil
from pathlib import Path

import openai
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "chromium and chromium-driver are needed (scripts/test.sh installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900"]:
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def test_a_message_typed_in_the_page_streams_back_the_apis_reply(server, alias, browser):
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "model").text == alias)
    for field, value in [("temperature", "0"), ("max-tokens", "24")]:
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "message").send_keys("Name three colours.", Keys.ENTER)
    reply = wait.until(lambda d: d.find_element(
        By.CSS_SELECTOR, ".msg.assistant[data-state=done]"))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    want = client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=24, temperature=0).choices[0].message.content
    # The page shows the text as the browser lays it out (trailing spaces trimmed).
    assert reply.text == want.strip() and want.strip()
    assert browser.find_element(By.CSS_SELECTOR, ".msg.user").text == "Name three colours."
    out = ROOT / "target" / "serve-page-chat.png"
    browser.save_screenshot(str(out))


def test_the_explain_view_shows_tokens_candidates_and_the_heatmap(server, browser):
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    browser.find_element(By.ID, "tab-explain").click()
    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("5")
    browser.find_element(By.ID, "explain-go").click()
    wait.until(lambda d: d.find_element(By.ID, "explain-out").get_attribute("data-state") == "done")
    tokens = browser.find_elements(By.CSS_SELECTOR, "#explain-out .tok")
    generated = browser.find_elements(By.CSS_SELECTOR, "#explain-out .tok.gen")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.steps tr")
    assert 1 <= len(generated) <= 5 and len(tokens) > len(generated)
    assert len(rows) == len(generated) + 1  # a header, then one row per step
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.steps .cand")) == 5 * len(generated)
    canvas = browser.find_element(By.CSS_SELECTOR, ".heat canvas")
    assert canvas.size["width"] > 0
    layers = browser.find_elements(By.CSS_SELECTOR, "#layer option")
    assert len(layers) > 1
    # Another layer redraws the heatmap.
    layers[0].click()
    wait.until(lambda d: d.find_element(By.ID, "explain-out").get_attribute("data-state") == "done"
               and "layer 0" in d.find_element(By.CSS_SELECTOR, ".heat .caption").text)
    browser.save_screenshot(str(ROOT / "target" / "serve-page-explain.png"))
