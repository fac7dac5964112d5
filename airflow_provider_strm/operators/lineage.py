"""OpenLineage for the STRM operators: datasets in and out, and column lineage that says which
PII columns were encrypted, decrypted, masked or left encrypted. Built from what the job already
knows (no extra I/O); OpenLineage is imported only here, inside the functions."""

from __future__ import annotations

from typing import Any

from airflow_provider_strm.core.config import DataLocation
from airflow_provider_strm.hooks.connector import storage_for


def _dataset(loc: DataLocation, path: str, facets: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    from airflow.providers.common.compat.openlineage.facet import Dataset

    namespace = storage_for(loc.connection_id).url.rstrip("/") or "file"
    return Dataset(namespace=namespace, name=path.lstrip("/"), facets=facets or {})


def _columns(source, header: list[str], treatment: dict[str, tuple[str, bool]]):  # type: ignore[no-untyped-def]
    """``treatment``: column → (description, masking); other columns are copied unchanged."""
    from airflow.providers.common.compat.openlineage.facet import (
        ColumnLineageDatasetFacet,
        Fields,
        InputField,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )
    from openlineage.client.generated.column_lineage_dataset import Transformation

    fields = {}
    for column in header:
        description, masking = treatment.get(column, ("copied unchanged", False))
        kind = Transformation(type="DIRECT", subtype="TRANSFORMATION" if masking or column in treatment else "IDENTITY",
                              description=description, masking=masking)  # fmt: skip
        fields[column] = Fields(
            inputFields=[
                InputField(namespace=source.namespace, name=source.name, field=column, transformations=[kind])
            ],
            transformationDescription=description,
            transformationType="MASKED" if masking else "IDENTITY",
        )
    schema = SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=c, type="string") for c in header])
    return {"columnLineage": ColumnLineageDatasetFacet(fields=fields), "schema": schema}


def encrypt_lineage(job):  # type: ignore[no-untyped-def]
    from airflow.providers.openlineage.extractors import OperatorLineage

    config = job.config
    source = _dataset(config.source_data, job.source_path)
    header = list(job._header)
    treatment = {c: ("encrypted (AES-SIV, per-entity daily key)", True) for c in header if c in job.contract.pii_fields}
    outputs = [_dataset(config.encrypted_data, job.encrypted_path(), _columns(source, header, treatment))]
    if config.encryption_keys_data is not None:
        outputs.append(_dataset(config.encryption_keys_data, job.keys_path() or ""))
    return OperatorLineage(inputs=[source], outputs=outputs)


def derive_lineage(job):  # type: ignore[no-untyped-def]
    from airflow.providers.openlineage.extractors import OperatorLineage

    encrypted = _dataset(job.config.encrypted_data, job.input_path)
    header = list(job._header)
    outputs = []
    for target in job.targets:
        treatment: dict[str, tuple[str, bool]] = {}
        levels = ",".join(str(v) for v in target.config.consent_levels)
        for col in job._pii:
            name = header[col]
            if col in target.decrypt:
                treatment[name] = (f"decrypted ({target.config.consent_level_type} consent {levels})", False)
            else:
                treatment[name] = ("left encrypted (no consent)", True)
        for col in target.masks:
            treatment[header[col]] = ("masked (hashed)", True)
        outputs.append(_dataset(target.config.target, target.path, _columns(encrypted, header, treatment)))
    return OperatorLineage(inputs=[encrypted], outputs=outputs)
