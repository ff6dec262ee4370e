"""Start Loupe: parse flags, start the model engine, serve the page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.command_line import (
    add_engine_flags,
    add_limit_flags,
    build_limits,
    engine_config,
    model_problem,
    show_log,
)
from app.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    AppConfig,
    AsrConfig,
    Limits,
    default_data_dir,
    env_default,
)
from app.tasks import describe_command
from app.v1.cors import origin_of
from model import SpeechRecognizer, open_engine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="launch.py",
        description="Loupe: a local assistant that sees, hears and answers, with Gemma 4 12B. "
        "`launch.py describe --help`: describe whole folders of images.",
    )
    add_engine_flags(parser)
    parser.add_argument(
        "--host",
        default=env_default("host", DEFAULT_HOST),
        help="address to listen on (default %(default)s: this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env_default("port", str(DEFAULT_PORT))),
        help="port to listen on (default %(default)s)",
    )
    parser.add_argument(
        "--asr-model",
        default=env_default("asr_model", "tiny.en"),
        metavar="NAME_OR_PATH",
        help="faster-whisper model size or local folder (default %(default)s)",
    )
    parser.add_argument(
        "--desktop",
        action="store_true",
        help="open Loupe in its own window (pywebview, else the browser), with screen capture "
        "and push-to-talk",
    )
    parser.add_argument(
        "--share", action="store_true", help="make a public Gradio share link (off by default)"
    )
    parser.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASS",
        help="require a login on the page: this user name and password (repeatable, one per "
        "person); each user name has its own conversations",
    )
    parser.add_argument(
        "--auth-file",
        type=Path,
        default=env_default("auth_file", "") or None,
        metavar="FILE",
        help="logins as --auth takes them, one USER:PASS a line (# starts a comment), kept off "
        "the command line (or LOUPE_AUTH_FILE)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="where conversations and their files are kept (default %(default)s)",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=Limits.queue_size,
        help="requests that may wait for the model (default %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=env_default("api_key", ""),
        metavar="KEY",
        help="require this Bearer key on Loupe's own OpenAI-compatible /v1 (or LOUPE_API_KEY); "
        "needed there when Loupe listens on the network or uses --auth",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=env_list("allowed_hosts"),
        metavar="NAME",
        help="a host name the page may also be reached by (repeatable); requests naming any "
        "other host are refused",
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=env_list("allowed_origins"),
        metavar="ORIGIN",
        help="a web app (such as https://app.example.com) whose pages may call /v1 from the "
        "browser (repeatable; or LOUPE_ALLOWED_ORIGINS, comma-separated); the key still applies",
    )
    add_limit_flags(parser)
    return parser.parse_args(argv)


def env_list(name: str) -> list[str]:
    """A repeatable flag's default: LOUPE_<NAME>, comma-separated."""
    return [item for item in env_default(name, "").split(",") if item]


def build_config(args: argparse.Namespace) -> AppConfig:
    """AppConfig from flags; raises SystemExit with one sentence on bad values."""
    auth = logins(args.auth, args.auth_file)
    model, remote = engine_config(args)
    return AppConfig(
        model=model,
        remote=remote,
        api_key=args.api_key,
        asr=AsrConfig(args.asr_model),
        limits=build_limits(args),
        host=args.host,
        port=args.port,
        desktop=args.desktop,
        share=args.share,
        auth=auth,
        data_dir=args.data_dir,
        allowed_hosts=tuple(name.strip().lower() for name in args.allowed_host),
        allowed_origins=allowed_origins(args.allowed_origin),
    )


def allowed_origins(names: list[str]) -> tuple[str, ...]:
    """Each --allowed-origin as browsers send it; SystemExit with one sentence for a bad one."""
    try:
        return tuple(origin_of(name) for name in names)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def logins(pairs: list[str], users_file: Path | None) -> tuple[tuple[str, str], ...]:
    """(user name, password) of each --auth USER:PASS and each line of --auth-file; raises
    SystemExit with one sentence on a malformed or repeated login."""
    named = [(pair, "--auth") for pair in pairs]
    if users_file is not None:
        try:
            lines = users_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"--auth-file {users_file} could not be read ({exc}).") from None
        named += [
            (line.strip(), f"line {number} of {users_file}")
            for number, line in enumerate(lines, 1)
            if line.strip() and not line.strip().startswith("#")
        ]
    found: dict[str, str] = {}
    for pair, where in named:
        user, sep, password = pair.partition(":")
        # Gradio's login form strips the user name it is sent; a name with spaces around it
        # could never log in.
        if not (sep and user.strip() and password) or user != user.strip():
            raise SystemExit(f"{where} takes USER:PASS, for example ana:correct-horse.")
        if user in found:
            raise SystemExit(f"The user name {user!r} is given twice ({where}); give each once.")
        found[user] = password
    return tuple(found.items())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["describe"]:
        return describe_command.describe(argv[1:])
    config = build_config(parse_args(argv))
    problem = model_problem(config.model, config.remote)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    show_log()
    engine = open_engine(config.remote or config.model, queue_size=config.limits.queue_size)
    engine.start()  # the model loads while the page's modules do
    try:
        # The page's modules (and Gradio) load only to serve it: `describe` never needs them.
        from app.history import History
        from app.page.chat_events import ChatHandlers
        from app.page.voice import Voice
        from app.server import serve

        recognizer = SpeechRecognizer(config.asr.model)
        recognizer.start_loading()
        history = History(config.data_dir)
        serve(ChatHandlers(engine, Voice(recognizer), history, config), config)
    except KeyboardInterrupt:
        pass
    finally:
        engine.close()  # whatever ended the server: the worker goes quietly, not by a broken pipe
    return 0


if __name__ == "__main__":
    sys.exit(main())
