"""docs/configuration.md and the config loader agree: each documented setting is read, each read one documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

from airflow_provider_strm.core import config as config_module

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
LOCATIONS = re.compile(
    r"^(source_data|(?:encrypted_data|encryption_keys_data|dead_letter|derived_data\[\])\.target)\.(data_connector_ref|path_prefix|file_name|data_type)"
)


def documented() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", DOC.read_text(), re.MULTILINE)}


def example() -> dict:
    block = re.search(r"```json\n(.*?)\n```", DOC.read_text(), re.DOTALL)
    assert block is not None
    return json.loads(block.group(1))


def read_by_the_loader(doc: dict) -> set[str]:
    config_module.RECORDED_SETTINGS = set()
    try:
        config_module.load_batch_job_config(doc)
        recorded = set(config_module.RECORDED_SETTINGS)
    finally:
        config_module.RECORDED_SETTINGS = None
    return {LOCATIONS.sub(r"<location>.\2", path) for path in recorded}


def test_every_setting_the_loader_reads_is_documented_and_every_documented_one_is_read() -> None:
    read = read_by_the_loader(example())
    docs = documented()
    assert read - docs == set(), "settings the loader reads but the reference does not document"
    assert docs - read == set(), "documented settings the complete example does not exercise (or the loader ignores)"


def test_the_strm_reference_config_uses_only_documented_settings(strm_reference) -> None:
    doc = json.loads((strm_reference / "batch-job-config.json").read_text())
    assert read_by_the_loader(doc) <= documented()
