"""`model-manager run|migrate|keys|models|aliases`: parse arguments, load the config (not for `models`), run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from model_manager import app, keys_cli
from model_manager.client import aliases as aliases_cli
from model_manager.client import cli as client_cli
from model_manager.config import Config, ConfigError, load_config
from model_manager.core import logs
from model_manager.core.errors import InvalidArgument, ServiceError
from model_manager.store.migrate import SchemaOutdated


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="model-manager", description="LLM model catalogue and loader")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve the APIs and/or run the loader")
    run.add_argument("--config", required=True, help="YAML configuration file")
    run.add_argument("--role", default="all", choices=app.ROLES, help="which parts of the process to run")
    mig = sub.add_parser("migrate", help="apply database migrations and exit")
    mig.add_argument("--config", required=True, help="YAML configuration file")
    keys_cli.add_parser(sub)
    client_cli.add_parser(sub)
    aliases_cli.add_parser(sub)
    return p


async def _run(config: Config, role: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.run(config, role, stop)


async def _migrate(config: Config) -> None:
    db = await app.open_database(config, apply_migrations=True)
    await db.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("models", "aliases"):  # a client of a running server: no config file, no database
        try:
            return client_cli.run(args) if args.command == "models" else aliases_cli.run(args)
        except client_cli.UsageError as e:
            print(f"model-manager: {e}", file=sys.stderr)
            return 2
        except client_cli.ApiError as e:
            print(f"model-manager: {e}", file=sys.stderr)
            return 1
    # The keys commands talk to people and scripts: only warnings, not migration chatter, around their output.
    level = logging.WARNING if args.command == "keys" else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        if args.command != "keys":
            logs.configure(config.logging.format, config.logging.level)
        if args.command == "run":
            asyncio.run(_run(config, args.role))
        elif args.command == "keys":
            asyncio.run(keys_cli.run(config, args))
        else:
            asyncio.run(_migrate(config))
            logging.getLogger("model_manager").info("migrations applied")
    except ConfigError as e:
        print(f"model-manager: config error: {e}", file=sys.stderr)
        return 2
    except InvalidArgument as e:
        print(f"model-manager: {e.message}", file=sys.stderr)
        return 2
    except (ServiceError, SchemaOutdated) as e:
        print(f"model-manager: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"model-manager: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
