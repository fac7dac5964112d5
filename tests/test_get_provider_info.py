"""The provider is registered with Airflow and everything it declares imports."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from airflow_provider_strm.get_provider_info import get_provider_info


def test_every_declared_module_and_hook_class_imports() -> None:
    info = get_provider_info()
    modules = [m for group in ("hooks", "operators") for entry in info[group] for m in entry["python-modules"]]
    for module in modules:
        importlib.import_module(module)
    for conn in info["connection-types"]:
        module, _, name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == conn["connection-type"] == "strm_keystore"


def test_airflow_lists_the_provider_and_its_connection_type(tmp_path: Path) -> None:
    airflow = str(Path(sys.executable).parent / "airflow")
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    providers = subprocess.run([airflow, "providers", "list"], env=env, capture_output=True, text=True, check=True)
    assert "airflow-provider-strm" in providers.stdout
    hooks = subprocess.run([airflow, "providers", "hooks"], env=env, capture_output=True, text=True, check=True)
    assert "strm_keystore" in hooks.stdout
