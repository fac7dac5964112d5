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
        cmd.add_argument(
            "--workers",
            type=int,
            default=1,
            help="processes working on chunks in parallel (default 1; 0 = one per core); outputs are the same",
        )
        if name == "derive":
            cmd.add_argument("--encrypted-path", help="the encrypted file (default: from the config)")
            cmd.add_argument("--keys-file", help="read keys from this local STRM keys file instead of a key store")
        _keystore_args(cmd)

    keys = sub.add_parser("keys", help="key store administration")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("new-kek", help="print a fresh random key-encryption key (base64)")
    listing = keys_sub.add_parser("list", help="keys per group: count, first/last window, expired")
    export = keys_sub.add_parser("export", help="write a group's keys as a STRM keys file")
    export.add_argument("group_id")
    export.add_argument("--to-file", required=True, metavar="[CONN_ID:]PATH", help="target (a data connector path)")
    export.add_argument("--from-day", help="first UTC day included (YYYY-MM-DD)")
    export.add_argument("--until-day", help="first UTC day excluded (YYYY-MM-DD)")
    forget = keys_sub.add_parser("forget", help="crypto-shred data subjects (values read from stdin or a file)")
    forget.add_argument("group_id")
    forget.add_argument(
        "--subjects-file", default="-", help="one data-subject value per line ('-' = stdin, the default)"
    )
    purge = keys_sub.add_parser("purge", help="delete keys past their expiresAt")
    purge.add_argument("--group-id", help="only this group")
    rotate = keys_sub.add_parser("rotate-kek", help="re-wrap every key under a new KEK")
    rotate.add_argument(
        "--new-kek-env", default="STRM_NEW_KEK_SECRET", help="environment variable holding the new KEK (base64)"
    )
    for cmd in (listing, export, forget, purge, rotate):
        _keystore_args(cmd)
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
    from airflow_provider_strm.core.derive import DeriveJob
    from airflow_provider_strm.core.encrypt import EncryptJob
    from airflow_provider_strm.core.keyfiles import keys_file_lookup
    from airflow_provider_strm.hooks.connector import storage_for

    config = load_batch_job_config(args.config, _overrides(args))
    contract = load_data_contract(args.contract)
    results = []
    workers = args.workers or os.cpu_count() or 1
    keys_file = getattr(args, "keys_file", None)
    store = None if keys_file and args.command == "derive" else _key_store(args)
    if args.command in ("encrypt", "run"):
        assert store is not None
        job = EncryptJob(config, contract, store, storage_for, source_path=args.source_path, workers=workers)
        results.append(job.run().to_dict())
    if args.command in ("derive", "run"):
        keys = keys_file_lookup(Path(keys_file).read_bytes(), keys_file) if keys_file else store
        assert keys is not None
        derive = DeriveJob(
            config, contract, keys, storage_for,
            source_path=args.source_path, encrypted_path=getattr(args, "encrypted_path", None), secrets=_secret,
            workers=workers,
        )  # fmt: skip
        results.append(derive.run().to_dict())
    return results[0] if len(results) == 1 else results


def _keys(args: argparse.Namespace) -> object:
    store = _key_store(args)
    if args.keys_command == "list":
        return store.groups()
    if args.keys_command == "export":
        from airflow_provider_strm.core.keyfiles import export_keys_file
        from airflow_provider_strm.hooks.connector import storage_for
        from airflow_provider_strm.operators.keys import day_ms

        conn_id, _, path = args.to_file.rpartition(":")
        keys = store.export_keys(args.group_id, window_from=day_ms(args.from_day), window_to=day_ms(args.until_day))
        return {"group_id": args.group_id, "keys": export_keys_file(keys, storage_for(conn_id or None), path)}
    if args.keys_command == "forget":
        source = sys.stdin if args.subjects_file == "-" else open(args.subjects_file, encoding="utf-8")  # noqa: SIM115
        with source:
            subjects = [line.strip() for line in source if line.strip()]
        return store.forget_subjects(args.group_id, subjects)
    if args.keys_command == "purge":
        return {"keys_deleted": store.purge_expired(group_id=args.group_id)}
    if args.keys_command == "rotate-kek":
        new = os.environ.get(args.new_kek_env)
        if not new:
            raise ConfigError("--new-kek-env", f"environment variable {args.new_kek_env} holds no new KEK")
        return {"keys_rewrapped": store.rotate_kek(new)}
    raise ConfigError("keys", f"unknown command {args.keys_command}")


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
        result = _keys(args) if args.command == "keys" else _run_jobs(args)
    except ConfigError as exc:
        print(f"strm-batch: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except JobStartError as exc:
        print(f"strm-batch: job could not start (retry later): {exc}", file=sys.stderr)
        return EXIT_START
    except StrmError as exc:
        print(f"strm-batch: job failed: {exc}", file=sys.stderr)
        return EXIT_PROCESSING
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
