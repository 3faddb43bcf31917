"""The simulated ``/bin/sh``: ``sh -c`` with pipelines, redirections and lists.

Grammar (POSIX sh's essentials): ``list := pipeline ((';' | '&&' | '||') pipeline)*``,
``pipeline := command ('|' command)*``, ``command := word+`` with redirections ``< file``,
``> file``, ``>> file``, ``2> file``, ``2>&1``; words are quoted as in sh (via ``shlex``);
``$?`` and ``$NAME`` expand. Built-ins: ``exit [n]``, ``cd dir``, ``:``.

Children are started with the method the kernel's shell uses: ``fork-exec`` (under the
kernel's fork policy, or ``cow-pt``/``copy`` explicitly), ``vfork-exec`` or ``spawnfd`` (the
fd model: each command is built through a builder fd and given exactly its descriptors 0, 1
and 2); the environment variable ``SPAWNFD_METHOD`` overrides it for one shell.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from typing import Any

from .ldso import search_path
from ..spawn import FdSpec, Open, SpawnedProcess, spawn

__all__ = ["sh_main", "parse", "ShellSyntaxError"]

OPS = {"|", ";", "&&", "||", "<", ">", ">>", "2>", "2>&1", "&"}
_VAR = re.compile(r"\$(\?|[A-Za-z_][A-Za-z0-9_]*)")


class ShellSyntaxError(ValueError):
    """The command line does not parse."""


@dataclasses.dataclass
class Command:
    argv: list[str]
    redirects: list[tuple[str, str]]  # (op, target)


def _tokens(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars="|;&<>")
    lex.whitespace_split = True
    out: list[str] = list(lex)
    # shlex splits "2>&1" as "2", ">&", "1" and "2>" as "2", ">": join them back.
    joined: list[str] = []
    i = 0
    while i < len(out):
        if out[i] == "2" and i + 1 < len(out) and out[i + 1] in (">", ">&"):
            if out[i + 1] == ">&" and i + 2 < len(out) and out[i + 2] == "1":
                joined.append("2>&1")
                i += 3
                continue
            joined.append("2>")
            i += 2
            continue
        joined.append(out[i])
        i += 1
    return joined


def parse(line: str) -> list[tuple[str, list[Command]]]:
    """A list of (connector, pipeline): the connector is how the pipeline runs after the
    previous one (';', '&&', '||')."""
    result: list[tuple[str, list[Command]]] = []
    connector = ";"
    pipeline: list[Command] = []
    cmd = Command([], [])
    tokens = _tokens(line)
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in ("<", ">", ">>", "2>"):
            if i + 1 >= len(tokens) or tokens[i + 1] in OPS:
                raise ShellSyntaxError(f"redirection {t} needs a file")
            cmd.redirects.append((t, tokens[i + 1]))
            i += 2
            continue
        if t == "2>&1":
            cmd.redirects.append((t, ""))
        elif t == "|":
            if not cmd.argv:
                raise ShellSyntaxError("syntax error near '|'")
            pipeline.append(cmd)
            cmd = Command([], [])
        elif t in (";", "&&", "||"):
            if cmd.argv:
                pipeline.append(cmd)
            elif pipeline or t != ";":
                raise ShellSyntaxError(f"syntax error near '{t}'")
            if pipeline:
                result.append((connector, pipeline))
            connector, pipeline, cmd = t, [], Command([], [])
        elif t in ("&", ">&"):
            raise ShellSyntaxError(f"'{t}' is not supported")
        else:
            cmd.argv.append(t)
        i += 1
    if cmd.argv:
        pipeline.append(cmd)
    elif pipeline:
        raise ShellSyntaxError("syntax error: a pipeline ends in '|'")
    elif connector in ("&&", "||"):
        raise ShellSyntaxError(f"syntax error: nothing after '{connector}'")
    if pipeline:
        result.append((connector, pipeline))
    return result


def _expand(word: str, status: int, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: str(status) if m.group(1) == "?" else env.get(m.group(1), ""),
                    word)


def _resolve(name: str, env: dict[str, str], sys: Any) -> str:
    found = search_path(sys, name, env.get("PATH", "/usr/bin:/bin").split(":"))
    return name if found is None else found


_REDIRECT_FLAGS = {"<": os.O_RDONLY, ">": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                   ">>": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                   "2>": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}


def _child_fds(sys: Any, cmd: Command, stdin: int | None, stdout: int | None
               ) -> dict[int, FdSpec]:
    """The child's descriptors 0, 1 and 2: the shell's own (those it has open), the pipe
    ends, then the redirections in order."""
    fds: dict[int, FdSpec] = {fd: fd for fd in (0, 1, 2) if _is_open(sys, fd)}
    if stdin is not None:
        fds[0] = stdin
    if stdout is not None:
        fds[1] = stdout
    for op, target in cmd.redirects:
        if op == "2>&1":
            if 1 in fds:
                fds[2] = fds[1]
            else:
                fds.pop(2, None)
        else:
            fds[{"<": 0, "2>": 2}.get(op, 1)] = Open(target, _REDIRECT_FLAGS[op], 0o644)
    return fds


def _is_open(sys: Any, fd: int) -> bool:
    try:
        sys.proc.fstat(fd)
    except OSError:
        return False
    return True


async def _say(sys: Any, message: str) -> None:
    """An error message on the shell's stderr; a shell without one says nothing."""
    try:
        await sys.write(2, message.encode())
    except OSError:
        pass


async def _spawn(sys: Any, cmd: Command, stdin: int | None, stdout: int | None,
                 env: dict[str, str], method: str) -> SpawnedProcess | int:
    """Start one command with its pipe ends and redirections; returns the child, or the
    exit status sh gives a command that could not start (after saying why, as sh does)."""
    path = _resolve(cmd.argv[0], env, sys)
    try:
        return await spawn(sys.proc, path, cmd.argv, env, method=method,
                           fds=_child_fds(sys, cmd, stdin, stdout))
    except FileNotFoundError as e:
        if e.filename == path:
            await _say(sys, f"sh: {cmd.argv[0]}: not found\n")
            return 127
        await _say(sys, f"sh: cannot open {e.filename}: {e.strerror}\n")
        return 1
    except OSError as e:
        if e.filename == path:
            await _say(sys, f"sh: {cmd.argv[0]}: {e.strerror}\n")
            return 126
        await _say(sys, f"sh: cannot open {e.filename}: {e.strerror}\n")
        return 1


async def _pipeline(sys: Any, cmds: list[Command], env: dict[str, str], method: str,
                    status: int) -> int:
    cmds = [Command([_expand(w, status, env) for w in c.argv],
                    [(op, _expand(t, status, env)) for op, t in c.redirects]) for c in cmds]
    if len(cmds) == 1 and cmds[0].argv[0] in ("exit", "cd", ":"):
        return await _builtin(sys, cmds[0])
    children: list[SpawnedProcess | int] = []
    prev = None
    for i, cmd in enumerate(cmds):
        r = w = None
        if i + 1 < len(cmds):
            r, w = sys.pipe(os.O_CLOEXEC)
        children.append(await _spawn(sys, cmd, prev, w, env, method))
        if prev is not None:
            sys.close(prev)
        if w is not None:
            sys.close(w)
        prev = r
    last = 0
    for c in children:
        st = c if isinstance(c, int) else await c.wait()
        last = st << 8 if isinstance(c, int) else st
    if os.WIFSIGNALED(last):
        return 128 + os.WTERMSIG(last)
    return os.WEXITSTATUS(last)


async def _builtin(sys: Any, cmd: Command) -> int:
    name, args = cmd.argv[0], cmd.argv[1:]
    if name == "exit":
        sys.exit(int(args[0]) if args else 0)
    if name == "cd":
        try:
            sys.chdir(args[0] if args else "/")
        except OSError as e:
            await _say(sys, f"sh: cd: {e.strerror}\n")
            return 2
    return 0


async def sh_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    """``sh -c 'command line'``."""
    if len(argv) < 3 or argv[1] != "-c":
        await _say(sys, "sh: only 'sh -c command' is simulated\n")
        return 2
    try:
        program = parse(argv[2])
    except (ShellSyntaxError, ValueError) as e:
        await _say(sys, f"sh: {e}\n")
        return 2
    method = env.get("SPAWNFD_METHOD") or sys.proc.kernel.shell_method
    status = 0
    for connector, pipeline in program:
        if (connector == "&&" and status) or (connector == "||" and not status):
            continue
        status = await _pipeline(sys, pipeline, env, method, status)
    return status
