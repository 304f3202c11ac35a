"""SSH to one target: Fabric opens, authenticates and transfers; exec streams over paramiko.

Fabric (`fabric.Connection`) is the connection layer: it opens the session over a socket we
connect ourselves (TCP_NODELAY, so small exchanges do not wait on Nagle), with our host key
policy (the runner's own known_hosts, accept-new, changed keys refused) and SFTP for
`put`/`get`. Commands do not go through Fabric's Runner, which keeps all output in memory
and polls stdin: each runs on a channel of the transport Fabric opened, read chunk by chunk
as it arrives. The command runs under ``setsid`` and reports its process group id in-band
(the first line of stderr, stripped), so timeouts and stops end the whole group through a
second channel.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import select
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.connections.base import (
    KILL_GRACE,
    READ_SIZE,
    STDERR,
    STDOUT,
    Connection,
    Deadline,
    Execution,
    JumpHost,
    OutputCallback,
    RunResult,
    StartCallback,
    kill_script,
)
from runner.connections.knownhosts import AcceptNewPolicy, KnownHosts
from runner.connections.sshstack import load
from runner.connections.stepshell import Boundary, StepShell
from runner.connections.transfer import exec_get, exec_put, sftp_get, sftp_put
from runner.errors import ConnectError, HostKeyError
from runner.settings import known_hosts_path

if TYPE_CHECKING:
    import fabric
    import paramiko
else:
    fabric, paramiko = load()

# paramiko's transport thread logs what ended it (a banner timeout...) with a traceback,
# which Python prints to stderr when nobody configured logging; the reason is reported
# once, as one line, by `SSHConnection._reason`.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

PGID_MARKER = b"\x1erunner-pgid "  # then the number and PGID_END, first on stderr
PGID_END = b"\x1f"  # not a newline: a step shell holds a last newline back (Boundary)
DRAIN_AFTER_KILL = 5.0  # seconds to keep reading once a killed group's channel stays open


class _QuickAckSocket(socket.socket):
    """A socket that acknowledges what it receives at once (Linux TCP_QUICKACK).

    sshd does not set TCP_NODELAY for a session without a terminal, so Nagle holds a
    small packet back until the previous one is acknowledged. Right after authentication
    sshd sends a message the client has no reply to (`hostkeys-00@openssh.com`), and then
    the confirmation of the first channel: with the client delaying its ACK (Linux's
    delayed ACK), the first command on every new connection waited for that delay. The kernel leaves
    quick-ACK mode on its own, so it is set again after every read.
    """

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = super().recv(size, flags)
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


_AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
_keys_lock = threading.Lock()
_keys: dict[tuple[str, int, int], paramiko.PKey] = {}


def _private_key(path: str) -> paramiko.PKey | None:
    """The key in `path`, read once per process (paramiko would try each key type in
    turn on every connection); None when it cannot be read here, so that paramiko reads
    it itself and reports why (missing file, passphrase...), or offers the certificate
    beside it."""
    try:
        if os.path.exists(f"{path}-cert.pub"):
            return None
        stat = os.stat(path)
        cache_key = (path, stat.st_mtime_ns, stat.st_size)
        with _keys_lock:
            key = _keys.get(cache_key)
        if key is None:
            key = paramiko.PKey.from_path(path)
            with _keys_lock:
                _keys[cache_key] = key
        return key
    except Exception:  # noqa: BLE001 - any failure: let paramiko try and explain it
        return None


class _Transport(paramiko.Transport):
    """paramiko's transport, whose thread wakes once a second, not ten times, to look
    for its own close and the keepalive when its socket is quiet.

    Each wake-up is a timed-out read (an exception) and a turn of the GIL: at 500
    connections, 5,000 a second that did nothing but compete with the threads that had
    work (BENCHMARKS.md, "500 hosts"). A close does not wait for the thread (paramiko
    marks the transport closed at once) and the keepalive is 15 s.
    """

    _active_check_timeout = 1.0


def _aead_first_transport(sock: socket.socket, **kwargs: Any) -> paramiko.Transport:
    """A transport that offers AES-GCM first, as OpenSSH offers an AEAD cipher first.

    paramiko prefers AES-CTR with a separate HMAC, whose check it makes byte by byte in
    Python for every packet received; with GCM the check is part of the decryption, in
    C, and a step costs less CPU (BENCHMARKS.md, "Figures behind design choices").
    Servers without GCM still get the usual ciphers.
    """
    transport = _Transport(sock, **kwargs)
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    first = tuple(c for c in _AEAD_CIPHERS if c in offered)
    options.ciphers = first + tuple(c for c in offered if c not in first)
    return transport


class SSHConnection(Connection):
    """A persistent SSH session to one host, safe to run many commands on at once."""

    def __init__(
        self,
        host: str,
        address: str,
        port: int = 22,
        user: str = "root",
        key_file: str | Path | None = None,
        connect_timeout: float = 10.0,
        known_hosts: Path | None = None,
        keepalive: int = 15,
        step_shell: bool = True,
        password: str | None = None,
        become: bool = False,
        become_user: str | None = None,
        become_password: str | None = None,
        jump: Sequence[JumpHost] = (),
        proxy_command: str | None = None,
    ) -> None:
        super().__init__(host)
        self.address = address
        self.port = int(port)
        self.user = user
        self.key_file = str(key_file) if key_file else None
        self.connect_timeout = connect_timeout
        self.known_hosts = Path(known_hosts) if known_hosts else known_hosts_path()
        self.keepalive = keepalive
        self._fabric: fabric.Connection | None = None
        self._lock = threading.Lock()  # opening, closing and SFTP are one at a time
        self._no_sftp = False  # the server refused the SFTP subsystem once: use exec channels
        self._sftp_client: paramiko.SFTPClient | None = None
        # Steps run in one long-lived shell on the target (runner.connections.stepshell)
        # unless it is refused, busy, or the step needs sudo: then on an exec channel.
        self.step_shell = step_shell
        self._shell: StepShell | None = None
        self._shell_lock = threading.Lock()
        self.password = password
        self.become = become  # every step through sudo (`ansible_become`), not only `sudo:`
        self.become_user = become_user or "root"
        self.become_password = become_password
        self.jump = list(jump)  # hops of ProxyJump
        self.proxy_command = proxy_command

    # -- connecting ------------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self.is_open:
                return
            self._close_quietly()
            self._fabric = self._connect()

    def _connect(self) -> fabric.Connection:
        started = time.monotonic()
        gateway = self._gateway()  # the last jump host, or None
        sock = None if gateway is not None else self._proxy_command_sock() or self._dial()
        remaining = max(0.1, self.connect_timeout - (time.monotonic() - started))
        conn = self._fabric_connection(
            self.address, self.port, self.user, self._identities(), remaining, gateway, sock
        )
        policy = AcceptNewPolicy(KnownHosts(self.known_hosts), self.host)
        conn.client.set_missing_host_key_policy(policy)
        try:
            conn.open()
        except HostKeyError:
            conn.close()
            raise
        except Exception as error:  # paramiko raises many kinds; each becomes one line
            cause = _transport_failure(conn) or error
            if time.monotonic() - started >= self.connect_timeout:
                cause = TimeoutError()  # paramiko gave up waiting: "No existing session"
            conn.close()
            if sock is not None:
                sock.close()
            raise ConnectError(self.host, self._reason(cause)) from error
        conn.transport.set_keepalive(self.keepalive)
        _report_exit_signals(conn.transport)
        return conn

    @staticmethod
    def _fabric_connection(
        address: str,
        port: int,
        user: str,
        identities: dict[str, object],
        timeout: float,
        gateway: fabric.Connection | None,
        sock: object | None,
    ) -> fabric.Connection:
        """A Fabric connection, not yet open, over `sock` or through `gateway`."""
        extra: dict[str, object] = {} if sock is None else {"sock": sock}
        cls = _GatewayedConnection if gateway is not None else fabric.Connection
        return cls(
            host=address,
            user=user,
            port=port,
            # A Config of its own: Invoke's config objects re-merge their layers in place
            # on access, so one shared between threads can be seen empty mid-merge.
            config=fabric.Config(overrides={"load_ssh_configs": False}),
            gateway=gateway if gateway is not None else False,
            connect_kwargs={
                **extra,
                **identities,
                "timeout": timeout,
                "banner_timeout": timeout,
                "auth_timeout": timeout,
                "transport_factory": _aead_first_transport,
            },
        )

    def _gateway(self) -> fabric.Connection | None:
        """The jump hosts (`-J a,b`) as Fabric gateways, each reached through the one
        before; None without jump hosts."""
        gateway: fabric.Connection | None = None
        for i, hop in enumerate(self.jump):
            sock = self._dial(hop.address, hop.port) if i == 0 else None
            conn = self._fabric_connection(
                hop.address,
                hop.port,
                hop.user,
                _identities_for(hop.key_file, None),
                self.connect_timeout,
                gateway,
                sock,
            )
            name = hop.address if hop.port == 22 else f"[{hop.address}]:{hop.port}"
            conn.client.set_missing_host_key_policy(
                AcceptNewPolicy(KnownHosts(self.known_hosts), name)
            )
            gateway = conn
        return gateway

    def _proxy_command_sock(self) -> paramiko.ProxyCommand | None:
        """The ProxyCommand's pipes as the socket, `%h`, `%p` and `%r` filled in (Fabric's
        own string gateway would fill `%p` with 22 whatever the port)."""
        if not self.proxy_command:
            return None
        tokens = {"%h": self.address, "%p": str(self.port), "%r": self.user, "%%": "%"}
        command = re.sub("%[hpr%]", lambda m: tokens[m.group()], self.proxy_command or "")
        try:
            return paramiko.ProxyCommand(command)
        except Exception as error:
            raise ConnectError(self.host, f"ProxyCommand failed to start: {error}") from error

    def _identities(self) -> dict[str, object]:
        """The inventory's key alone; without one, the agent and ~/.ssh/id_* as OpenSSH.
        With `ansible_password`, paramiko tries password authentication after the keys."""
        return _identities_for(self.key_file, self.password)

    def _dial(self, address: str | None = None, port: int | None = None) -> socket.socket:
        """A TCP socket to the host (or a first jump host) with TCP_NODELAY and TCP
        keepalives on."""
        where = (address or self.address, port or self.port)
        try:
            sock = socket.create_connection(where, timeout=self.connect_timeout)
        except OSError as error:
            raise ConnectError(self.host, self._reason(error, where)) from error
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if not hasattr(socket, "TCP_QUICKACK"):
            return sock
        quick = _QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        quick.settimeout(self.connect_timeout)
        return quick

    def _reason(self, error: BaseException, dialed: tuple[str, int] | None = None) -> str:
        """One line saying why connecting failed (to `dialed`, a jump host, if given)."""
        where = "{}:{}".format(*(dialed or (self.address, self.port)))
        no_methods = "No authentication methods" in str(error)  # no key at all to offer
        if isinstance(error, paramiko.AuthenticationException) or no_methods:
            keys = f"key {self.key_file}" if self.key_file else "the agent and ~/.ssh/id_* keys"
            keys += " and the inventory's password" if self.password else ""
            via = " (through a jump host)" if self.jump or self.proxy_command else ""
            return f"authentication failed for user {self.user} with {keys}{via}"
        if isinstance(error, FileNotFoundError) and self.key_file:
            return f"private key file not found: {self.key_file}"
        if isinstance(error, (socket.timeout, TimeoutError)) or _caused_by_timeout(error):
            return f"connection to {where} timed out after {self.connect_timeout:g} s"
        if isinstance(error, ConnectionRefusedError):
            return f"connection refused by {where}"
        if isinstance(error, OSError) and error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"no route to {where}"
        if isinstance(error, EOFError | paramiko.SSHException) and "banner" in str(error):
            return f"{where} did not answer as an SSH server ({error})"
        return f"cannot connect to {where}: {error or type(error).__name__}"

    @property
    def is_open(self) -> bool:
        conn = self._fabric
        return conn is not None and conn.is_connected

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        with self._shell_lock:
            shell, self._shell = self._shell, None
        if shell is not None:
            shell.close()
        if self._fabric is not None:
            self._fabric.close()
            self._fabric = None

    def _transport(self) -> paramiko.Transport:
        conn = self._fabric
        transport = conn.transport if conn is not None else None
        if transport is None or not transport.is_active():
            raise ConnectError(self.host, "connection is not open")
        return transport

    def _channel(self) -> paramiko.Channel:
        """A new session channel; ConnectError if the host does not answer in time."""
        timeout = self.keepalive or self.connect_timeout
        try:
            return self._transport().open_session(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise ConnectError(self.host, f"cannot open a channel: {error}") from error

    # -- running ---------------------------------------------------------------------------

    def _execute(self, script: str, sudo: bool, execution: Execution) -> RunResult:
        become = self._become(sudo)
        shell = self._take_shell(script) if become is None else None
        if shell is not None:
            return self._execute_in_shell(shell, script, execution)
        channel = self._channel()
        pump = _ChannelPump(self, channel, execution.on_output, execution.on_start)
        try:
            # The script goes on the channel's input (after a become password, when
            # one is asked), which then stays open for the step's watcher; the step
            # itself reads /dev/null.
            end = secrets.token_hex(16)
            text = _sourced(script, end).encode()
            channel.exec_command(self._wrap(len(text), end, become))
            _send(channel, (become[2] if become is not None else b"") + text)
            return pump.run(execution.deadline)
        except BaseException:
            pump.abort()
            raise
        finally:
            channel.close()

    def _take_shell(self, script: str) -> StepShell | None:
        """The connection's step shell, locked for one step; None when the step must use
        an exec channel (the shell is refused, busy with another step, or the script is
        too long). A shell that ended since its last step is replaced."""
        if not self.step_shell or not StepShell.fits(script):
            return None
        with self._shell_lock:
            shell = self._shell
            if shell is not None and shell.ended:
                shell.close()
                shell = self._shell = None
            if shell is None:
                shell = StepShell.start(self._channel(), self.connect_timeout)
                if shell is None:  # no bash or no job control on the target
                    self.step_shell = False
                    return None
                self._shell = shell
        return shell if shell.lock.acquire(blocking=False) else None

    def _execute_in_shell(self, shell: StepShell, script: str, execution: Execution) -> RunResult:
        pump: _ShellPump | None = None
        try:
            mark = shell.send(_sourced(script))
            pump = _ShellPump(self, shell, mark, execution.on_output, execution.on_start)
            return pump.run(execution.deadline)
        except BaseException:
            if pump is not None:
                pump.abort()
            raise
        finally:
            if (
                pump is None or not pump.reusable
            ):  # it left, died, or is still busy with a killed step
                with self._shell_lock:
                    if self._shell is shell:
                        self._shell = None
                shell.close()
            shell.lock.release()

    def _wrap(self, length: int, end: str, become: tuple[str, str, bytes] | None) -> str:
        """The command line for sshd: read the script from the channel, run it in a process
        group of its own, reporting its id.

        The command line holds no part of the script, which may hold secrets: the script
        comes on the channel's input (`length` bytes ending with the word `end`, so a cut
        script never runs) and reaches /bin/sh on its stdin (`_SOURCE`).

        OpenSSH starts every session's command as a new session (setsid), so the login
        shell already leads a group of its own: when /proc says so, it execs /bin/sh in
        place, at no extra process. Otherwise (another server) the script runs under
        ``setsid`` in a subshell whose parent's stderr goes to /dev/null, so that its
        "Terminated" notice about a killed group is not mistaken for output. A command
        ended by a signal is reported by sshd as exit-signal, which `_ChannelPump` maps
        to 128 + N as a shell would.

        The step reads /dev/null. A watcher forked beside it (`_WATCH_LEADER`,
        `_WATCH_CHILDREN`) reads the rest of the channel's input, which the controller
        never writes: sshd closes it when the connection goes away, and also right after
        the step's leader exits. So at end of file the watcher ends the step's group
        (TERM, then KILL a second later) only while that leader still runs: a process a
        finished step left behind on purpose lives on, as it does on the controller.
        """
        read = _read_script(length, end)
        if become is not None:
            sudo_sh = f"{become[1]} /bin/sh -c {shlex.quote(read + _under_setsid())}"
            return f"{become[0]}exec {sudo_sh}"
        return (  # POSIX syntax, builtins only until the exec: the login shell runs it
            f"{read}"
            "{ read -r s < /proc/$$/stat; } 2>/dev/null; s=${s##*) }; set -- $s; "
            f'[ "$3" = $$ ] && {{ {_WATCH_LEADER} exec {_SOURCE} 4<&- {_HEREDOC}}}; '
            f"{_under_setsid()}"
        )

    def _become(self, sudo: bool) -> tuple[str, str, bytes] | None:
        """How a step asks for sudo here: shell text to run first, the sudo command to put
        before `/bin/sh -c ...`, and what to send on the channel's input first; None to
        run as the login user.

        A step's `sudo: true`, or the inventory's `ansible_become` for every step, asks
        for `ansible_become_user` (root by default); nothing to ask when logged in as
        that user. With `ansible_become_password`, the login shell reads the password
        as the first line of the channel's input into a variable of its environment,
        and sudo asks `printenv` for it as its askpass program: the password is never
        on a command line, and sudo reads it only when it has to (a NOPASSWD rule, a
        wrong password: no line is left over for the step, no prompt waits forever)."""
        if not (sudo or self.become) or self.user == self.become_user:
            return None
        target = f"-u {shlex.quote(self.become_user)}"
        if not self.become_password:
            return "", f"sudo -n {target}", b""
        return (
            "IFS= read -r RUNNER_BECOME_PASS && export RUNNER_BECOME_PASS && "
            "SUDO_ASKPASS=$(command -v printenv) && export SUDO_ASKPASS && ",
            f"sudo -A -p RUNNER_BECOME_PASS {target}",
            self.become_password.encode() + b"\n",
        )

    def kill_process_group(self, pgid: int, grace: float = KILL_GRACE) -> None:
        script = kill_script(pgid, grace)
        command = f"/bin/sh -c {shlex.quote(script)}"
        become = self._become(True)  # the step's group may be its become user's
        if become is not None:
            command = f"{become[0]}{become[1]} {command} 2>/dev/null || {command}"
        channel = self._channel()
        try:
            channel.exec_command(f"exec /bin/sh -c {shlex.quote(command)}")
            if become is not None and become[2]:
                channel.sendall(become[2])
            if not channel.status_event.wait(grace + 1 + self.connect_timeout):
                raise ConnectError(self.host, f"no answer while ending process group {pgid}")
        finally:
            channel.close()

    def _probe(self) -> None:
        """Prove the peer still answers (a channel open is one round trip), or raise."""
        self._channel().close()

    # -- transfers -------------------------------------------------------------------------

    def put(self, local_path: str | Path, remote_path: str, mode: int | None = None) -> None:
        with self._lock:
            if self._over_sftp(lambda sftp: sftp_put(sftp, str(local_path), remote_path, mode)):
                return
        exec_put(self._channel, str(local_path), remote_path, mode)

    def get(self, remote_path: str, local_path: str | Path) -> None:
        with self._lock:
            if self._over_sftp(lambda sftp: sftp_get(sftp, remote_path, local_path)):
                return
        exec_get(self._channel, remote_path, local_path)

    def _over_sftp(self, transfer: Callable[[paramiko.SFTPClient], None]) -> bool:
        """Run `transfer` on the connection's SFTP session; False (nothing done) when the
        server has no SFTP subsystem. The session ending under it (its server process
        killed) fails the step as an OSError, and the next transfer opens a new one."""
        try:
            sftp = self._sftp()
            if sftp is None:
                return False
            transfer(sftp)
        except (paramiko.SSHException, EOFError, OSError) as error:
            client, self._sftp_client = self._sftp_client, None
            channel = client.get_channel() if client else None
            if isinstance(error, OSError) and channel is not None and not channel.closed:
                self._sftp_client = client  # a file's own error (no such file...): as it is
                raise
            self._transport()  # the whole connection lost: unreachable
            reason = str(error) or type(error).__name__
            raise OSError(errno.EIO, f"the SFTP session ended: {reason}") from error
        return True

    def _sftp(self) -> paramiko.SFTPClient | None:
        """The connection's SFTP session, opened again when the last one ended; None when
        the server refuses the SFTP subsystem (remembered for the connection's life)."""
        if self._no_sftp:
            return None
        transport = self._transport()
        client = self._sftp_client
        if client is not None:
            current = client.get_channel()
            if current is not None and current.get_transport() is transport and not current.closed:
                return client
        channel = self._channel()
        try:
            channel.invoke_subsystem("sftp")
        except paramiko.SSHException:
            channel.close()
            self._transport()  # a connection lost meanwhile is that, not a missing subsystem
            self._no_sftp = True
            return None
        self._sftp_client = paramiko.SFTPClient(channel)
        return self._sftp_client

    def _open_fabric(self) -> fabric.Connection:
        self._transport()
        assert self._fabric is not None
        return self._fabric


class _ChannelPump:
    """Reads one exec channel to its end, forwarding output and enforcing the deadline."""

    def __init__(
        self,
        connection: SSHConnection,
        channel: paramiko.Channel,
        on_output: OutputCallback,
        on_start: StartCallback | None,
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.on_output = on_output
        self.on_start = on_start
        self.pgid: int | None = None
        self._head = b""  # stderr until the process group line is complete
        self._head_done = False  # the line was read (or the wrapper failed before it)
        self._finished = False

    def run(self, deadline: Deadline) -> RunResult:
        poller = select.poll()
        poller.register(self.channel.fileno(), select.POLLIN)
        reason: str | None = None
        last_heard = time.monotonic()
        give_up_at = float("inf")
        while not self._at_end() and time.monotonic() < give_up_at:
            wait = deadline.wait_time() if reason is None else 0.1
            # Look before sleeping: paramiko's one pipe for two streams can miss a wakeup
            # (stderr arriving while a read of stdout clears the pipe).
            ready = self.channel.recv_ready() or self.channel.recv_stderr_ready()
            if (ready or poller.poll(wait * 1000)) and self._drain():
                last_heard = time.monotonic()
            else:
                self._idle()
            if reason is None and self._head_done:
                reason = deadline.reason()
                if reason is not None and self.pgid is not None and not self._end_group(reason):
                    self._finished = True
                    return RunResult(rc=-1, timed_out=False, stopped=True, pgid=self.pgid)
                if reason is not None:
                    give_up_at = time.monotonic() + DRAIN_AFTER_KILL
            last_heard = self._check_alive(last_heard)
        self._drain()
        self._finished = True
        rc = self._exit_status()
        if rc == -1 and not self.connection.is_open:  # closed by the peer going away
            raise self._lost()
        return RunResult(
            rc=rc,
            timed_out=reason == "timed_out",
            stopped=reason == "stopped",
            pgid=self.pgid,
        )

    def _end_group(self, reason: str) -> bool:
        """Kill the step's group for `reason`; False when the host did not answer a stop.
        A stop the user asked for stands then (the step is Stopped, not the host
        unreachable), and waits no more: sshd ends the group once the connection closes
        (the watcher beside the step)."""
        try:
            self.connection.kill_process_group(self.pgid or 0)
        except ConnectError:
            if reason != "stopped":
                raise
            return False
        return True

    def _idle(self) -> None:
        """Called when a poll saw nothing new."""

    def abort(self) -> None:
        """End the remote group of a run that is being abandoned (error, Ctrl-C)."""
        if self._finished or self.pgid is None:
            return
        with contextlib.suppress(ConnectError):
            self.connection.kill_process_group(self.pgid, grace=0)

    def _at_end(self) -> bool:
        channel = self.channel
        if channel.recv_ready() or channel.recv_stderr_ready():
            return False
        if channel.eof_received or channel.closed:
            return True
        if not self.connection.is_open:
            raise self._lost()
        return False

    def _lost(self) -> ConnectError:
        conn = self.connection
        return ConnectError(
            conn.host, f"connection to {conn.address}:{conn.port} lost while a step ran"
        )

    def _drain(self) -> bool:
        """Forward what has arrived; True if anything had."""
        got = False
        while self.channel.recv_ready():
            self.on_output(STDOUT, self.channel.recv(READ_SIZE))
            got = True
        while self.channel.recv_stderr_ready():
            self._stderr(self.channel.recv_stderr(READ_SIZE))
            got = True
        return got

    def _stderr(self, data: bytes) -> None:
        if self._head_done or not data:
            self.on_output(STDERR, data)
            return
        self._head += data
        if not self._head.startswith(PGID_MARKER[: len(self._head)]):
            self._give_up_marker()  # the wrapper itself failed: show what it said
            return
        line, end, rest = self._head.partition(PGID_END)
        if not end:
            return
        self.pgid = int(line[len(PGID_MARKER) :])
        self._head, self._head_done = b"", True
        if self.on_start is not None:
            self.on_start(self.pgid)
        if rest:
            self.on_output(STDERR, rest)

    def _give_up_marker(self) -> None:
        head, self._head, self._head_done = self._head, b"", True
        self.on_output(STDERR, head)

    def _check_alive(self, last_heard: float) -> float:
        """Probe a silent peer every keepalive interval; ConnectError if it is gone."""
        interval = self.connection.keepalive
        if not interval or time.monotonic() - last_heard < interval:
            return last_heard
        try:
            self.connection._probe()
        except ConnectError as error:
            raise ConnectError(
                self.connection.host, f"connection lost: no answer for {interval} s"
            ) from error
        return time.monotonic()

    def _exit_status(self) -> int:
        if self._head:
            self._give_up_marker()
        if self.channel.status_event.wait(self.connection.connect_timeout):
            return self.channel.exit_status
        return -1


class _ShellPump(_ChannelPump):
    """Reads one step from the connection's step shell, up to the shell's end marks."""

    def __init__(
        self,
        connection: SSHConnection,
        shell: StepShell,
        mark: bytes,
        on_output: OutputCallback,
        on_start: StartCallback | None,
    ) -> None:
        super().__init__(connection, shell.channel, on_output, on_start)
        stdout_end, stderr_end = StepShell.ends(mark)
        self.out = Boundary(stdout_end)
        self.err = Boundary(stderr_end)
        self.rc: int | None = None
        self.left = False  # the shell left: the step's processes live on (see stepshell)

    @property
    def reusable(self) -> bool:
        """True when the shell ended the step cleanly and waits for the next one."""
        return self.rc is not None and self.err.found and not self.left and self._finished

    def _at_end(self) -> bool:
        channel = self.channel
        if channel.recv_ready() or channel.recv_stderr_ready():
            return False
        if self.rc is not None and self.err.found and not self.left:
            return True
        if channel.eof_received or channel.closed:  # the shell left, or died
            return True
        if not self.connection.is_open:
            raise self._lost()
        return False

    def _drain(self) -> bool:
        got = False
        while self.channel.recv_ready():
            self._stdout(self.channel.recv(READ_SIZE))
            got = True
        while self.channel.recv_stderr_ready():
            data = self.channel.recv_stderr(READ_SIZE)
            if not self.err.found:
                data = self.err.feed(data) + self.err.after
                self.err.after = b""
            if data:
                self._stderr(data)
            got = True
        return got

    def _stdout(self, data: bytes) -> None:
        if self.rc is not None:  # after the end mark: what the step's processes left
            self.on_output(STDOUT, data)
            return
        before = self.out.feed(data)
        if before:
            self.on_output(STDOUT, before)
        status, newline, rest = self.out.after.partition(b"\n")
        if not self.out.found or not newline:
            return
        kind, _, rc = status.partition(b" ")
        self.rc, self.left, self.out.after = int(rc), kind == b"x", b""
        if rest:
            self.on_output(STDOUT, rest)

    def _idle(self) -> None:
        """A quiet stream's held-back newline is the step's: show it now, not at the end."""
        self._flush_held()

    def _flush_held(self) -> None:
        held = self.out.flush()
        if held:
            self.on_output(STDOUT, held)
        held = self.err.flush()
        if held:
            self._stderr(held)  # it may complete the process-group line

    def _exit_status(self) -> int:
        self._flush_held()  # the shell ended without its marks: the held bytes are the step's
        if self._head:
            self._give_up_marker()
        return -1 if self.rc is None else self.rc


def _sourced(script: str, end: str = "") -> str:
    """`script` as its /bin/sh reads it from stdin (`_SOURCE`): it first sets its stdin to
    /dev/null and reports its process group (`PGID_MARKER`); `end`, when given, is a last
    comment line that shows the script arrived whole."""
    head = "exec </dev/null; printf '\\036runner-pgid %s\\037' \"$$\" >&2"
    return f"{head}\n{script}\n# {end}" if end else f"{head}\n{script}\n"


def _read_script(length: int, end: str) -> str:
    """Shell text setting `c` to the `length` bytes the channel's input starts with, and
    exiting unless they end with `end`: bash reads them itself, another shell with head."""
    return (
        'if [ "${BASH_VERSINFO:-0}" -ge 5 ] 2>/dev/null; then '
        f"LC_ALL=C read -r -N {int(length)} c; else c=$(head -c {int(length)}); fi; "
        f"case $c in *{end}) ;; *) exit 1;; esac; "
    )


def _send(channel: paramiko.Channel, data: bytes) -> None:
    """Send `data` on `channel`'s input; a command that already ended (sudo refused) has
    its own output and status to say why, so a closed channel is not an error here."""
    with contextlib.suppress(OSError):
        channel.sendall(data)


class _GatewayedConnection(fabric.Connection):
    """A Fabric connection through a jump host that closes the jump host's connection
    after its own (Fabric leaves a gateway open)."""

    def close(self) -> None:
        super().close()
        if isinstance(self.gateway, fabric.Connection):
            self.gateway.close()


def _identities_for(key_file: str | None, password: str | None) -> dict[str, object]:
    """paramiko's authentication arguments: the key alone when one is named, else the
    agent and ~/.ssh/id_* as OpenSSH; a password is tried after the keys."""
    secret: dict[str, object] = {"password": password} if password else {}
    if key_file:
        key = _private_key(key_file)
        given = {"pkey": key} if key is not None else {"key_filename": key_file}
        return {**given, **secret, "look_for_keys": False, "allow_agent": False}
    return {**secret, "look_for_keys": True, "allow_agent": True}


def _with_pgid_line(script: str) -> str:
    """`script` preceded by the line that reports its process group (`PGID_MARKER`)."""
    return f"printf '\\036runner-pgid %s\\037' \"$$\" >&2\n{script}"


def _report_exit_signals(transport: paramiko.Transport) -> None:
    """Make `transport`'s channels take sshd's exit-signal as exit status 128 + N.

    paramiko only knows exit-status; a command that execs in place of the login shell and
    is killed gets exit-signal instead (RFC 4254 6.10), and would otherwise have no status.
    The transport dispatches channel requests through a table, so this instance gets its own.
    """
    # The table is paramiko's private attribute, which its stubs leave out.
    table = dict(transport._channel_handler_table)  # type: ignore[attr-defined]
    table[paramiko.common.MSG_CHANNEL_REQUEST] = _handle_channel_request
    transport._channel_handler_table = table  # type: ignore[attr-defined]


def _handle_channel_request(channel: paramiko.Channel, message: paramiko.Message) -> None:
    start = message.packet.tell()
    if message.get_text() != "exit-signal":
        message.packet.seek(start)
        paramiko.Channel._handle_request(channel, message)  # type: ignore[attr-defined]  # private
        return
    message.get_boolean()  # want_reply: false for exit-signal
    number = getattr(signal.Signals, "SIG" + message.get_text(), None)
    channel.exit_status = 128 + number if number is not None else -1
    channel.status_event.set()


# The step's watchers on an exec channel (see `SSHConnection._wrap`). Both are forked by
# the shell that runs the step, after it moved the channel's input to fd 4; `$$` is that
# shell. Where the shell leads the step's group and execs the step, the watcher is in
# that group (so its id stays in use while the watcher lives) and ignores the TERM it
# sends it. Otherwise the step is the shell's other child, found in /proc, and leads a
# session of its own.
_WATCH_LEADER = (
    "exec 4<&0 </dev/null; "
    "(read -r l <&4 || ! kill -0 $$ || { trap '' TERM; kill -TERM -$$; sleep 1; kill -KILL -$$; }"
    ") >/dev/null 2>&1 &"
)
_WATCH_CHILDREN = (
    "(read -r l <&4 || ! kill -0 $$ || { read -r k < /proc/$$/task/$$/children; "
    "read -r m l < /proc/self/stat; for s in TERM KILL; do for q in $k; do "
    '[ "$q" = "$m" ] || kill -$s -$q; done; sleep 1; done; }) >/dev/null 3>&- &'
)


_SOURCE = "/bin/sh -c '. /dev/stdin'"  # a step's shell: its script on stdin, not in argv
_HEREDOC = "<<RUNNER_EOF\n$c\nRUNNER_EOF\n"  # the script read into `c`, as a stdin


def _under_setsid() -> str:
    """Shell text running the script in `c` as a new session, in a subshell whose own
    stderr is silenced (its notice about a killed group is not the command's output),
    with a watcher beside it."""
    return (
        f"exec 3>&2 2>/dev/null 4<&0 </dev/null; {_WATCH_CHILDREN} "
        f"(exec setsid {_SOURCE} 2>&3 3>&- 4<&- {_HEREDOC})"
    )


def _transport_failure(conn: fabric.Connection) -> BaseException | None:
    """What killed paramiko's transport thread (a banner timeout...), which the client
    itself reports only as "No existing session"."""
    transport = conn.client.get_transport()
    return getattr(transport, "saved_exception", None) if transport is not None else None


def _caused_by_timeout(error: BaseException) -> bool:
    """True when a paramiko error wraps a socket timeout (no banner, no handshake)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (socket.timeout, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
