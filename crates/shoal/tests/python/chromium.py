"""Headless Chromium for the dashboard test and benchmark: offline (every
request but loopback goes to a closed port), no sandbox (run as root in
CI), driven by Debian's chromedriver (or $CHROMEDRIVER)."""

import os

from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService


def browser(width=1280, height=900, page_load_timeout=None):
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
              "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"):
        o.add_argument(a)
    service = ChromeService(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(service=service, options=o)
    if page_load_timeout is not None:
        d.set_page_load_timeout(page_load_timeout)
    return d
