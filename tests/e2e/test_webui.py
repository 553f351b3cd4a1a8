"""Issue 10's acceptance tests for the chat page (`web_ui: true`), against a lab host.

`up` installs the real Gradio (mirrored from PyPI into the lab's general index) in its own
venv on the host and runs the page as its own unit; a headless Chromium (Debian's package,
driven by selenium) logs in, asks, uploads an image and clears, as a person would. The
stand-in server says what image it received, so an image that never arrives fails here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.e2e.test_chat import png, provision

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "test-results"
PASSWORD = "page-pass-7Qx"
KEY = "web-api-key-3c9d"
MODEL = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"


@pytest.fixture(scope="module")
def general_index(lab, host) -> str:
    """The lab's general index (port 8701), which carries the real Gradio wheels the lab
    mirrored from PyPI when it was built."""
    from provision_lab import paths

    requests.get(f"{paths.GENERAL_INDEX_URL}gradio/", timeout=10).raise_for_status()
    return paths.GENERAL_INDEX_URL


@pytest.fixture(scope="module")
def host(lab) -> Iterator[object]:
    [booted] = lab.add_hosts(["a100"])
    yield booted
    lab.remove_host(booted.name)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def inventory(lab, host, home, general_index) -> str:
    """The lab inventory with the page on, a password and an API key; `up` deploys it."""
    data = yaml.safe_load(lab.inventory().read_text())
    data["all"]["vars"].update(web_ui=True, web_password=PASSWORD, api_key=KEY,
                               pip_extra_index_url=general_index)
    path = home / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    done = provision(home, "up", "-i", str(path), "--host", host.name, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verify web chat | ok" in done.stdout, done.stdout
    # the page is (re)started only once the API server is verified
    assert done.stdout.index("verify chat | ok") < done.stdout.index("web restart | changed")
    assert PASSWORD not in done.stdout + done.stderr and KEY not in done.stdout + done.stderr
    return str(path)


@pytest.fixture(scope="module")
def page(host, inventory) -> str:
    return f"http://{host.address}:7860"


def test_converged_host_with_the_page_costs_at_most_3_execs(host, inventory, home) -> None:
    execs = host.exec_request_count()
    done = provision(home, "up", "-i", inventory, "--host", host.name, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["recap"][host.name]["changed"] == 0, done.stderr
    used = host.exec_request_count() - execs
    assert used <= 3, f"a converged re-run with web_ui made {used} exec requests"
    steps = {s["name"]: s["status"] for s in result["hosts"][0]["steps"]}
    assert steps["verify web page"] == "ok" and steps["verify web chat"] == "ok"


def test_the_page_runs_as_its_own_unit_and_holds_only_its_port(host, inventory) -> None:
    pid = host.ssh("systemctl show -p MainPID --value fastdeploy-webui", check=True).stdout
    assert int(pid) > 0
    listening = host.ssh("ss -Hltnp", check=True).stdout
    ports = {int(line.split()[3].rsplit(":", 1)[1]) for line in listening.splitlines()
             if f"pid={int(pid)}," in line}
    assert ports == {7860}, listening
    user = host.ssh(f"ps -o user= -p {int(pid)}", check=True).stdout.strip()
    assert user != "root", "the page must run as an unprivileged user"
    gradio = host.ssh("/opt/fastdeploy-webui/venv/bin/python -c "
                      "'import gradio; print(gradio.__version__)'", check=True).stdout
    assert gradio.strip() == "5.50.0"
    env_mode = host.ssh("stat -c %a /etc/fastdeploy-webui/env", check=True).stdout.strip()
    assert env_mode == "600"
    assert PASSWORD not in host.read_file("/etc/fastdeploy-webui/config.json")


def test_a_wrong_password_is_refused_by_the_page_and_its_api(page) -> None:
    from provision.webui.check import ask_page

    wrong = requests.post(f"{page}/login", data={"username": "x", "password": "nope"},
                          timeout=10)
    assert wrong.status_code in (400, 401), wrong.text
    right = requests.post(f"{page}/login", data={"username": "x", "password": PASSWORD},
                          timeout=10)
    assert right.status_code == 200
    with pytest.raises(ValueError, match="login"):
        ask_page(page, "nope")
    assert ask_page(page, PASSWORD).startswith(f"Hello from {MODEL}")


def test_status_shows_the_page_and_smoke_checks_it(host, inventory, home, tmp_path) -> None:
    done = provision(home, "status", "-i", inventory, "--limit", host.name, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["hosts"][0]["web"] == "200"
    junit = tmp_path / "smoke.xml"
    smoke = provision(home, "smoke", "-i", inventory, "--host", host.name, "--junit",
                      str(junit))
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert 'name="verify web chat"' in junit.read_text()


def test_check_shows_a_page_change_without_making_it(host, inventory, home) -> None:
    done = provision(home, "up", "-i", inventory, "--host", host.name, "--check", "--diff",
                     "-e", "web_port=7861", "-e", "web_password=")
    assert done.returncode == 0, done.stderr
    assert "would change: web-config" in done.stdout and '"port": 7861' in done.stdout
    assert "would restart the chat page" in done.stdout
    assert "has no login: it serves the model to anyone" in done.stdout
    assert PASSWORD not in done.stdout and KEY not in done.stdout
    config = json.loads(host.read_file("/etc/fastdeploy-webui/config.json"))
    assert config["port"] == 7860  # --check changed nothing


# --------------------------------------------------------------------------- the browser


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def _login(driver, page: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page + "/")
    WebDriverWait(driver, 60).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=password]"))
    driver.find_element(By.CSS_SELECTOR, "input[type=text]").send_keys("someone")
    driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(password)
    next(b for b in driver.find_elements(By.TAG_NAME, "button") if b.text == "Login").click()


def test_browser_wrong_password_is_refused(browser, page) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _login(browser, page, "not-the-password")
    WebDriverWait(browser, 30).until(
        lambda d: "Incorrect Credentials" in d.find_element(By.TAG_NAME, "body").text)
    assert not browser.find_elements(By.CSS_SELECTOR, "#question textarea")


def test_browser_chat_answers_reads_an_image_and_clears(browser, page, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    _login(browser, page, PASSWORD)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#question textarea"))
    assert MODEL in browser.title and MODEL in browser.find_element(By.TAG_NAME, "h1").text

    def chat_text() -> str:
        return browser.find_element(By.ID, "chat").text

    box = browser.find_element(By.CSS_SELECTOR, "#question textarea")
    box.send_keys("Who are you?")
    box.send_keys(Keys.ENTER)
    wait.until(lambda d: f"Hello from {MODEL}" in chat_text())
    assert "Thinking" in chat_text()  # the reasoning, in its collapsible block

    image = tmp_path / "grid.png"
    image.write_bytes(png(12, 8))
    browser.find_element(By.CSS_SELECTOR, "#question input[type=file]").send_keys(str(image))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#question img"))
    box = browser.find_element(By.CSS_SELECTOR, "#question textarea")
    box.send_keys("What is in this picture?")
    box.send_keys(Keys.ENTER)
    seen = f"[image: image/png, {len(image.read_bytes())} bytes, 12x8]"
    wait.until(lambda d: seen in chat_text())
    RESULTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(RESULTS / "webui-chat.png"))

    browser.find_element(By.ID, "clear").click()
    wait.until(lambda d: "Hello from" not in chat_text())
    box = browser.find_element(By.CSS_SELECTOR, "#question textarea")
    box.send_keys("Again, from the start?")
    box.send_keys(Keys.ENTER)
    wait.until(lambda d: f"Hello from {MODEL}" in chat_text())
    assert "Who are you?" not in chat_text()  # the history went with the clear


def test_web_ui_off_stops_and_removes_the_page(host, inventory, home, page) -> None:
    """Last in this module: it takes the page away."""
    done = provision(home, "up", "-i", inventory, "--host", host.name, "-e", "web_ui=false")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "web-remove | changed" in done.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{page}/", timeout=5)
    assert host.ssh("test -e /etc/systemd/system/fastdeploy-webui.service").returncode == 1
    assert host.ssh("test -e /etc/fastdeploy-webui/env").returncode == 1
    again = provision(home, "up", "-i", inventory, "--host", host.name, "-e", "web_ui=false",
                      "--json")
    assert json.loads(again.stdout)["recap"][host.name]["changed"] == 0
