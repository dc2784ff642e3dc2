"""Starts `llmrt serve` (target/release/llmrt) on a free loopback port for the server tests."""

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
LLMRT = ROOT / "target" / "release" / "llmrt"
MODEL = ROOT / "models" / "smollm2-135m-instruct-q8_0.gguf"
# A model whose chat template shows it a tool-call format (Hermes' <tool_call>).
TOOL_MODEL = ROOT / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def model_path(model: Path = MODEL) -> Path:
    if not model.exists():
        # Under scripts/test.sh (LLMRT_REQUIRE_MODELS=1) an absent model is a failure.
        if os.environ.get("LLMRT_REQUIRE_MODELS") == "1":
            pytest.fail(f"{model} is missing: run scripts/fetch-models.sh")
        pytest.skip(f"SKIP: {model} is missing (scripts/fetch-models.sh fetches it)")
    return model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `llmrt serve`; `url` is its base address."""

    def __init__(self, *args: str, model: Path = MODEL):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(LLMRT), "serve", "-m", str(model_path(model)), "--port", str(self.port), "-t", "2",
               *args]
        self.log = open(ROOT / "target" / f"serve-test-{self.port}.log", "wb")
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            assert self.process.poll() is None, f"llmrt serve exited: {self.read_log()}"
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, f"llmrt serve not ready: {self.read_log()}"
            time.sleep(0.1)

    def read_log(self) -> str:
        self.log.flush()
        return (ROOT / "target" / f"serve-test-{self.port}.log").read_text(errors="replace")

    def metrics(self, headers=None) -> dict:
        text = httpx.get(self.url + "/metrics", headers=headers).text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="session")
def server():
    s = Server("-c", "1024", "-np", "8")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def alias() -> str:
    return MODEL.stem
