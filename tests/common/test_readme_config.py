"""The README's configuration table is generated from the services' own config readers; this
fails when a setting is added, removed or re-documented without `make docs-config` into README."""

from pathlib import Path

from tools.config_table import table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_setting_the_code_reads():
    assert table() in README.read_text(), "README config table is stale: paste `make docs-config` output"
