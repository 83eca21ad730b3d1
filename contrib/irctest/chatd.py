"""irctest controller for chatd (https://github.com/progval/irctest).

Starts the built chatd with ``--irc PORT`` on the port irctest gives it, a line-protocol
``--tcp`` port and a fresh SQLite ``--db`` in the test's directory. Accounts are registered the way
a chatd member registers one: over the line protocol, ``/nick NAME`` then ``/register PASSWORD``.
See README.md next to this file for how to run it.
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional, Set, Type

from irctest import patma
from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.specifications import Capabilities, OptionalBehaviors

# The chatd binary: $CHATD_BIN, else the debug build of the repository this file is in.
CHATD_BIN = os.environ.get(
    "CHATD_BIN",
    str(Path(__file__).resolve().parents[2] / "target" / "debug" / "chatd"),
)

# How long a line-protocol answer may take (a debug build on a loaded machine).
LINE_TIMEOUT = 30.0

# The server name irctest's tests expect.
SERVER_NAME = "My.Little.Server"

# irctest's operator credentials (tests/oper.py): a configured operator (--oper NAME=PHC).
OPER_NAME = "operuser"
OPER_PASSWORD = "operpassword"


class ChatdController(BaseServerController, DirectoryBasedController):
    software_name = "chatd"
    supported_sasl_mechanisms: Set[str] = {"PLAIN"}
    supports_sts = False
    # chatd answers every command in order, so irctest's PING/PONG fence is enough.
    sync_sleep_time = 0.0

    # The caps chatd offers that irctest knows (src/transport/irc/cap.rs, OFFERED).
    capabilities = frozenset(
        (
            Capabilities.ACCOUNT_TAG,
            Capabilities.BATCH,
            Capabilities.ECHO_MESSAGE,
            Capabilities.EXTENDED_JOIN,
            Capabilities.LABELED_RESPONSE,
            Capabilities.MULTI_PREFIX,
            Capabilities.SERVER_TIME,
        )
    )

    optional_behaviors = frozenset(
        (
            OptionalBehaviors.CAP_REQ_MINUS,
            OptionalBehaviors.MULTI_JOIN,
            OptionalBehaviors.MULTI_PRIVMSG,
        )
    )

    # What src/transport/irc/isupport.rs sends (testValues checks each).
    isupport = {
        "CASEMAPPING": "rfc8265",
        "CHANTYPES": "#",
        "MSGREFTYPES": "msgid,timestamp",
        "PREFIX": "(ov)@+",
        "CHANMODES": "b,k,l,imnst",
        "TARGMAX": patma.ANYSTR,
        "UTF8ONLY": None,
        "WHOX": None,
    }

    line_port: int = 0

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str],
        websocket_port: Optional[int],
    ) -> None:
        assert self.proc is None
        if not os.access(CHATD_BIN, os.X_OK):
            raise RuntimeError(
                f"no chatd at {CHATD_BIN}: run `cargo build` or set CHATD_BIN"
            )
        self.create_config()
        assert self.directory
        self.hostname = hostname
        self.port = port
        (_, self.line_port) = self.get_hostname_and_port()

        args = [
            CHATD_BIN,
            "--bind",
            hostname,
            "--tcp",
            str(self.line_port),
            "--db",
            str(self.directory / "chatd.db"),
            # Operators are configured with a password hash (a bare name gives no rights on a
            # fresh database, and reserves the name).
            "--oper",
            f"{OPER_NAME}={_oper_hash()}",
            # irctest expects this server name in PONG, WHO, WHOIS, TIME, LINKS, INFO...
            "--name",
            SERVER_NAME,
            # irctest opens many connections from one address, at once, and sends in bursts.
            "--max-per-ip",
            "1000",
            "--rate",
            "off",
        ]
        if ssl:
            self.gen_ssl()
            args += ["--ircs", str(port), "--cert", str(self.pem_path)]
            args += ["--key", str(self.key_path)]
        else:
            args += ["--irc", str(port)]
        if password is not None:
            args += ["--irc-password", password]
        if websocket_port is not None:
            # IRC over WebSocket (text.ircv3.net) is served on the --http port.
            args += ["--http", str(websocket_port)]

        faketime_cmd = []
        if faketime and shutil.which("faketime"):
            faketime_cmd = ["faketime", "-f", faketime]
            self.faketime_enabled = True

        self.proc = self.execute(
            [*faketime_cmd, *args],
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        self.wait_for_port()

    def wait_for_services(self) -> None:
        # Accounts are chatd's own: nothing starts apart from the server.
        pass

    def registerUser(self, case, username: str, password: Optional[str] = None) -> None:
        """Registers an account as a chatd member does, over the line protocol."""
        assert password, "chatd accounts need a password"
        self._register_over_lines(username, password)

    def _register_over_lines(self, name: str, password: str) -> None:
        # Each registration comes from an address of its own (127.0.0.2 and on), as different
        # people's would: chatd takes 5 password attempts per address a minute, and the test's
        # own clients (SASL, from 127.0.0.1) need theirs.
        self.registrations = getattr(self, "registrations", 0) + 1
        source = ("127.0.0.%d" % (2 + self.registrations % 250), 0)
        with socket.create_connection(
            ("127.0.0.1", self.line_port), timeout=LINE_TIMEOUT, source_address=source
        ) as sock:
            reader = sock.makefile("r", encoding="utf-8", newline="\n")
            welcome = reader.readline()
            if not welcome.startswith("* "):
                raise RuntimeError(f"chatd's welcome expected, got {welcome!r}")
            sock.sendall(f"/nick {name}\n".encode())
            _expect(reader, f"* you are now known as {name}")
            sock.sendall(f"/register {password}\n".encode())
            _expect(reader, f"* {name} is registered to you")
            # Leave and wait for the server to close: the member is gone before the test goes
            # on (LUSERS counts and nick checks see the server as the test expects).
            sock.sendall(b"/quit\n")
            _expect(reader, "* bye")
            while reader.readline():
                pass


_OPER_HASH: Optional[str] = None


def _oper_hash() -> str:
    """The operator's password as a PHC string from `chatd hash-password` (cheap parameters:
    a debug build hashes every OPER and SASL login of the suite)."""
    global _OPER_HASH
    if _OPER_HASH is None:
        done = subprocess.run(
            [CHATD_BIN, "hash-password", "--argon2-memory", "64", "--argon2-passes", "1"],
            input=OPER_PASSWORD.encode(),
            capture_output=True,
            check=True,
        )
        _OPER_HASH = done.stdout.decode().strip()
    return _OPER_HASH


def _expect(reader, start: str) -> None:
    """Reads lines until one starts with `start`; fails with what came instead."""
    seen = []
    deadline = time.monotonic() + LINE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = reader.readline()
        except socket.timeout:
            break
        if not line:
            break
        if line.startswith(start):
            return
        seen.append(line.rstrip("\n"))
    raise RuntimeError(f"chatd never said {start!r}; it said {seen!r}")


def get_irctest_controller_class() -> Type[ChatdController]:
    return ChatdController
