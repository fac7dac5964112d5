"""Key management as Airflow tasks: export keys, forget data subjects, purge expired keys, rotate the KEK.

Subject values are PII: they are never template fields (so never shown as
rendered templates), never logged and never returned; give them as a
literal list, a key of the run's conf, or a file on a data connector.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_strm.core.errors import ConfigError
from airflow_provider_strm.core.keyfiles import export_keys_file
from airflow_provider_strm.hooks.connector import storage_for
from airflow_provider_strm.hooks.keystore import StrmKeyStoreHook

if TYPE_CHECKING:
    from airflow.sdk import Context

DAY_MS = 86_400_000


def _actor(context: Context) -> str:
    ti = context.get("ti")
    return f"airflow:{getattr(ti, 'dag_id', '?')}/{getattr(ti, 'task_id', '?')}/{getattr(ti, 'run_id', '?')}"


def day_ms(value: str | date | None) -> int | None:
    """``2026-11-20`` (or a date) → epoch ms of that UTC day's start."""
    if value in (None, ""):
        return None
    day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    return (day.toordinal() - date(1970, 1, 1).toordinal()) * DAY_MS


class ExportKeysOperator(BaseOperator):
    """Writes the keys of a group and window range as a STRM keys file, for a STRM-compatible decrypter.

    :param keystore_conn_id: the ``strm_keystore`` connection.
    :param group_id: the key group (a ``batch_job_group_id``). (templated)
    :param target_conn_id: the data connector to write to (None: a local path). (templated)
    :param target_path: the keys file path. (templated)
    :param window_from: first UTC day (``YYYY-MM-DD``) included. (templated)
    :param window_to: first UTC day excluded. (templated)
    """

    template_fields: Sequence[str] = ("group_id", "target_conn_id", "target_path", "window_from", "window_to")

    def __init__(
        self,
        *,
        group_id: str,
        target_path: str,
        target_conn_id: str | None = None,
        window_from: str | None = None,
        window_to: str | None = None,
        keystore_conn_id: str = StrmKeyStoreHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.group_id, self.target_path, self.target_conn_id = group_id, target_path, target_conn_id
        self.window_from, self.window_to = window_from, window_to
        self.keystore_conn_id = keystore_conn_id

    def execute(self, context: Context) -> dict[str, object]:
        store = StrmKeyStoreHook(self.keystore_conn_id).key_store
        keys = store.export_keys(self.group_id, window_from=day_ms(self.window_from), window_to=day_ms(self.window_to))
        count = export_keys_file(keys, storage_for(self.target_conn_id), self.target_path)
        self.log.info(
            "exported %d keys of group %s to %s:%s", count, self.group_id, self.target_conn_id, self.target_path
        )
        return {"group_id": self.group_id, "keys": count, "path": self.target_path}


class ForgetDataSubjectsOperator(BaseOperator):
    """Crypto-shreds data subjects: deletes every key that encrypted their records, in all windows.

    :param keystore_conn_id: the ``strm_keystore`` connection.
    :param group_id: the key group. (templated)
    :param subjects: values of the contract's ``data_subject_field`` (not templated: PII).
    :param subjects_conf_key: read the values from ``dag_run.conf[subjects_conf_key]`` at run time.
    :param subjects_conn_id: with ``subjects_path``: a file on a data connector, one value per line.
    :param subjects_path: the file of values. (templated)
    """

    template_fields: Sequence[str] = ("group_id", "subjects_path")

    def __init__(
        self,
        *,
        group_id: str,
        subjects: Sequence[str] | None = None,
        subjects_conf_key: str | None = None,
        subjects_conn_id: str | None = None,
        subjects_path: str | None = None,
        keystore_conn_id: str = StrmKeyStoreHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if sum(x is not None for x in (subjects, subjects_conf_key, subjects_path)) != 1:
            raise ConfigError("subjects", "give exactly one of subjects, subjects_conf_key or subjects_path")
        self.group_id = group_id
        self._subjects = list(subjects) if subjects is not None else None
        self.subjects_conf_key, self.subjects_conn_id, self.subjects_path = (
            subjects_conf_key,
            subjects_conn_id,
            subjects_path,
        )
        self.keystore_conn_id = keystore_conn_id

    def _values(self, context: Context) -> list[str]:
        if self._subjects is not None:
            return self._subjects
        if self.subjects_conf_key is not None:
            conf = getattr(context.get("dag_run"), "conf", None) or {}
            values = conf.get(self.subjects_conf_key)
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ConfigError(f"dag_run.conf.{self.subjects_conf_key}", "must be a list of strings")
            return values
        with storage_for(self.subjects_conn_id).open_read(self.subjects_path or "") as fh:
            return [line.strip() for line in fh.read().decode("utf-8").splitlines() if line.strip()]

    def execute(self, context: Context) -> dict[str, int]:
        store = StrmKeyStoreHook(self.keystore_conn_id).key_store
        counts = store.forget_subjects(self.group_id, self._values(context), actor=_actor(context))
        self.log.info("forgot %(subjects)d data subjects: %(keys_deleted)d keys deleted", counts)
        return counts


class PurgeExpiredKeysOperator(BaseOperator):
    """Deletes keys whose ``expiresAt`` (policy / retention days) has passed.

    :param keystore_conn_id: the ``strm_keystore`` connection.
    :param group_id: only this group (default: all). (templated)
    """

    template_fields: Sequence[str] = ("group_id",)

    def __init__(
        self, *, group_id: str | None = None, keystore_conn_id: str = StrmKeyStoreHook.default_conn_name, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.group_id, self.keystore_conn_id = group_id, keystore_conn_id

    def execute(self, context: Context) -> dict[str, int]:
        store = StrmKeyStoreHook(self.keystore_conn_id).key_store
        purged = store.purge_expired(group_id=self.group_id or None, actor=_actor(context))
        self.log.info("purged %d expired keys", purged)
        return {"keys_deleted": purged}


class RotateKekOperator(BaseOperator):
    """Re-wraps every key under the KEK of another connection; afterwards, point the store's connection at it.

    :param keystore_conn_id: the ``strm_keystore`` connection with the current KEK.
    :param new_kek_conn_id: a ``strm_keystore`` connection naming the new KEK (its database settings are unused).
    """

    def __init__(
        self, *, new_kek_conn_id: str, keystore_conn_id: str = StrmKeyStoreHook.default_conn_name, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.new_kek_conn_id, self.keystore_conn_id = new_kek_conn_id, keystore_conn_id

    def execute(self, context: Context) -> dict[str, int]:
        store = StrmKeyStoreHook(self.keystore_conn_id).key_store
        count = store.rotate_kek(StrmKeyStoreHook(self.new_kek_conn_id).kek_provider(), actor=_actor(context))
        self.log.info("re-wrapped %d keys under the new KEK", count)
        return {"keys_rewrapped": count}
