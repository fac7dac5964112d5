"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Connection forms are declared here as data so the API server shows them without importing our hooks.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_strm import __version__

INTEGRATION = "STRM Privacy"


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
            {"integration-name": INTEGRATION, "external-doc-url": "https://docs.strmprivacy.io", "tags": ["software"]}
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_strm.hooks.keystore", "airflow_provider_strm.hooks.connector"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_strm.operators.encrypt",
                    "airflow_provider_strm.operators.derive",
                    "airflow_provider_strm.operators.files",
                    "airflow_provider_strm.operators.keys",
                ],
            }
        ],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_strm.sensors.batch_job"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_strm.triggers.batch_job"]}],
        "extra-links": [
            "airflow_provider_strm.operators.links.StrmOutputLink",
            "airflow_provider_strm.operators.links.KeysFileLink",
        ],
        "connection-types": [
            {
                "connection-type": "strm_keystore",
                "hook-class-name": "airflow_provider_strm.hooks.keystore.StrmKeyStoreHook",
                "hook-name": "STRM key store",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"schema": "Database"},
                    "placeholders": {"host": "PostgreSQL host (empty: embedded SQLite)", "port": "5432"},
                },
                "conn-fields": {
                    "kek_secret": {
                        "label": "Key-encryption key (base64, 32 bytes)",
                        "description": "Wraps every keyset at rest. `strm-batch keys new-kek` makes one.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "url": {
                        "label": "SQLAlchemy URL",
                        "description": "Overrides host/port/schema, e.g. sqlite:////data/keys.db",
                        "schema": {"type": ["string", "null"]},
                    },
                    "path": {
                        "label": "SQLite file",
                        "description": "Embedded key store file when no host or URL is set.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
    }
