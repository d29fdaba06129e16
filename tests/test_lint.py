"""Lint in CI: ansible-lint (production profile, offline), yamllint and ruff over the repository, each clean.

Their configurations are .ansible-lint (and .ansible-lint-ignore), .yamllint and pyproject.toml's [tool.ruff];
docs/lint.md says which rules are set aside and why.
"""

import os
import subprocess

import pytest
from conftest import ROOT, bin_path

LINTERS = {
    # --offline as well as the configuration's `offline: true`: no Galaxy, no version check.
    "ansible-lint": ["ansible-lint", "--offline", "--nocolor", "-f", "pep8"],
    "yamllint": ["yamllint", "--strict", "-f", "parsable", "."],
    "ruff": ["ruff", "check", "--no-cache", "--output-format", "concise", "."],
}


@pytest.mark.parametrize("tool", sorted(LINTERS))
def test_repository_is_lint_clean(tool: str) -> None:
    argv = [bin_path(LINTERS[tool][0]), *LINTERS[tool][1:]]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), NO_COLOR="1", ANSIBLE_LINT_SKIP_SCHEMA_UPDATE="1")
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{tool} found problems (exit {result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
