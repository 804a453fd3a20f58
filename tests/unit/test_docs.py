"""The repository documents itself: links resolve inside it, and nothing points at material outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_relative_links_resolve() -> None:
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"


def test_nothing_points_outside_the_repository() -> None:
    sources = [*DOCS, *sorted((ROOT / "model_manager").rglob("*.py"))]
    for path in sources:
        text = path.read_text()
        assert "shared/spec" not in text and "../shared" not in text, f"{path} points outside the repository"


def test_docs_name_every_module_the_architecture_promises() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    for module in re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", text):
        candidates = [ROOT / "model_manager" / module, ROOT / module]
        assert any(c.exists() for c in candidates), f"docs/architecture.md names {module}, which does not exist"
