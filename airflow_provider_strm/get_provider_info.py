"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_strm import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-strm",
        "name": "STRM Privacy batch jobs",
        "description": (
            "STRM-compatible privacy batch jobs: field-level encryption with rotating "
            "per-entity keys, a managed key store and consent-based derived data."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "STRM Privacy",
                "external-doc-url": "https://github.com/strmprivacy",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "STRM Privacy",
                "python-modules": [
                    "airflow_provider_strm.hooks.keystore",
                    "airflow_provider_strm.hooks.connector",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "STRM Privacy",
                "python-modules": ["airflow_provider_strm.operators.encrypt"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "strm_keystore",
                "hook-class-name": "airflow_provider_strm.hooks.keystore.StrmKeyStoreHook",
            }
        ],
    }
