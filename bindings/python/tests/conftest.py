"""What the Python tests share: the repository's paths, and a test model that must be there."""

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "models"
#: The tool definitions the tool-call tests offer (OpenAI's shape), by function name.
TOOLS = json.loads((REPO / "tests" / "data" / "tools.json").read_text())


def require_model(path: Path) -> Path:
    """``path``, which a test needs: a missing model skips the test with the reason, and fails
    it under LLMRT_REQUIRE_MODELS=1 (scripts/test.sh sets it)."""
    if not path.exists():
        message = f"{path} is missing (scripts/fetch-models.sh fetches it)"
        if os.environ.get("LLMRT_REQUIRE_MODELS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path
