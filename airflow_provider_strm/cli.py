"""``strm-batch``: run STRM batch jobs without a scheduler.

Data connectors are Airflow connection ids, resolved as Airflow resolves them
(``AIRFLOW_CONN_<ID>`` environment variables, or the metadata DB if configured).
The key store is a SQLAlchemy URL (``--keystore``) with its key-encryption key
in the environment variable named by ``--kek-env``, or a ``strm_keystore``
connection (``--keystore-conn-id``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from airflow_provider_strm.core.errors import ConfigError, JobStartError, StrmError
from airflow_provider_strm.core.keystore import KeyStore, new_kek

EXIT_PROCESSING = 1
EXIT_CONFIG = 2
EXIT_START = 75  # EX_TEMPFAIL: worth a retry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strm-batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, text in (
        ("encrypt", "encrypt one file: encrypted file + keys file"),
        ("derive", "write the derived_data targets from an encrypted file"),
        ("run", "encrypt, then derive"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("config", help="STRM BatchJob JSON file")
        cmd.add_argument("--contract", required=True, help="data contract JSON file")
        cmd.add_argument("--source-path", help="the source file (overrides source_data)")
        cmd.add_argument("--group-id", help="overrides encryption.batch_job_group_id")
        cmd.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="PATH=JSON",
            help="override any config field, e.g. --set encrypted_data.target.path_prefix=out",
        )
        if name == "derive":
            cmd.add_argument("--encrypted-path", help="the encrypted file (default: from the config)")
            cmd.add_argument("--keys-file", help="read keys from this local STRM keys file instead of a key store")
        _keystore_args(cmd)

    keys = sub.add_parser("keys", help="key store administration")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("new-kek", help="print a fresh random key-encryption key (base64)")
    return parser


def _keystore_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("key store")
    group.add_argument(
        "--keystore",
        default="sqlite:///strm_keystore.db",
        help="SQLAlchemy URL of the key store (default: sqlite:///strm_keystore.db)",
    )
    group.add_argument(
        "--kek-env",
        default="STRM_KEK_SECRET",
        help="environment variable holding the base64 key-encryption key (default STRM_KEK_SECRET)",
    )
    group.add_argument("--keystore-conn-id", help="use this strm_keystore Airflow connection instead of --keystore")


def _key_store(args: argparse.Namespace) -> KeyStore:
    if args.keystore_conn_id:
        from airflow_provider_strm.hooks.keystore import StrmKeyStoreHook

        return StrmKeyStoreHook(args.keystore_conn_id).key_store
    kek = os.environ.get(args.kek_env)
    if not kek:
        raise ConfigError("--kek-env", f"environment variable {args.kek_env} holds no key-encryption key")
    store = KeyStore(args.keystore, kek)
    store.ensure_schema()
    return store


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in args.set:
        path, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError("--set", f"expected PATH=JSON, got {item!r}")
        try:
            overrides[path] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[path] = raw  # a bare string is the common case
    if getattr(args, "group_id", None):
        overrides["encryption.batch_job_group_id"] = args.group_id
    return overrides


def _run_jobs(args: argparse.Namespace) -> object:
    from pathlib import Path

    from airflow_provider_strm.core.config import load_batch_job_config
    from airflow_provider_strm.core.contract import load_data_contract
    from airflow_provider_strm.core.derive import DeriveJob, keys_file_lookup
    from airflow_provider_strm.core.encrypt import EncryptJob
    from airflow_provider_strm.hooks.connector import storage_for

    config = load_batch_job_config(args.config, _overrides(args))
    contract = load_data_contract(args.contract)
    results = []
    keys_file = getattr(args, "keys_file", None)
    store = None if keys_file and args.command == "derive" else _key_store(args)
    if args.command in ("encrypt", "run"):
        assert store is not None
        job = EncryptJob(config, contract, store, storage_for, source_path=args.source_path)
        results.append(job.run().to_dict())
    if args.command in ("derive", "run"):
        keys = keys_file_lookup(Path(keys_file).read_bytes(), keys_file) if keys_file else store
        assert keys is not None
        derive = DeriveJob(
            config, contract, keys, storage_for,
            source_path=args.source_path, encrypted_path=getattr(args, "encrypted_path", None), secrets=_secret,
        )  # fmt: skip
        results.append(derive.run().to_dict())
    return results[0] if len(results) == 1 else results


def _secret(conn_id: str) -> bytes:
    from airflow_provider_strm.operators._common import connection_secret

    return connection_secret(conn_id)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        if args.command == "keys" and args.keys_command == "new-kek":
            print(new_kek())
            return 0
        result = _run_jobs(args)
    except ConfigError as exc:
        print(f"strm-batch: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except JobStartError as exc:
        print(f"strm-batch: job could not start (retry later): {exc}", file=sys.stderr)
        return EXIT_START
    except StrmError as exc:
        print(f"strm-batch: job failed: {exc}", file=sys.stderr)
        return EXIT_PROCESSING
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
