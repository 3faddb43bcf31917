"""The simulated ``/bin/sh``: ``sh -c 'line'`` with a small POSIX shell grammar, after dash.

The language (a lexer and a recursive-descent parser over POSIX's grammar)::

    program   := linebreak (and_or ((';' | NEWLINE) and_or)*)? linebreak
    and_or    := pipeline (('&&' | '||') linebreak pipeline)*
    pipeline  := ['!'] command ('|' linebreak command)*
    command   := simple | '(' list ')' | '{' list '}' | if | while | until | for  (+ redirects)
    simple    := (NAME=word | redirect)* [word (word | redirect)*]
    if        := 'if' list 'then' list ('elif' list 'then' list)* ['else' list] 'fi'
    while     := ('while' | 'until') list 'do' list 'done'
    for       := 'for' NAME ['in' word*] (';' | NEWLINE) 'do' list 'done'
    redirect  := [n] ('<' | '>' | '>>' | '>|' | '<>' | '<&' | '>&') word

Words are quoted as in sh (``'...'``, ``"..."`` with ``$`` and backquotes expanded inside,
``\\``); they expand ``~``, ``$NAME``/``${NAME}``/``${#NAME}``, ``${NAME-word}`` with ``-``
``=`` ``+`` ``?`` (and ``:-``...), the special parameters ``$?``
``$$`` ``$#`` ``$@`` ``$*`` ``$0``..``$9`` ``$-`` ``$!``, and command substitution ``$(...)`` or
```...``` (a forked subshell writing into a pipe; trailing newlines stripped); unquoted
expansions are field-split on ``IFS`` whitespace. ``NAME=value`` alone sets a shell variable,
before a command it is in that command's environment. Built-ins: ``:``, ``exit``, ``cd``,
``pwd``, ``read``, ``export``, ``unset``, ``shift``, ``break``, ``continue``, and dash's
``echo`` when the arguments need it (backslash escapes, ``-e``-like options: ``/bin/echo``
would differ);
everything else (``true``, ``echo``...) is a program started as a child. A subshell ``(...)``,
a command substitution and a built-in or compound command inside a pipeline run in a forked
child of the shell (as dash runs them), so ``cd`` there leaves the shell where it was.

What dash has and this shell does not — functions, ``case``, here-documents, ``&``,
arithmetic, ``${x#...}``/``${x%...}`` patterns, pathname expansion (``*``, ``?``, ``[...]``), the
built-ins ``set``, ``eval``, ``exec``, ``trap``, ``wait``... — is refused with ``sh: N:
<what> is not supported by the simulator's sh`` and exit status 2, never run differently.
Messages and statuses are dash's (``sh: 1: nosuch: not found``, 127; ``Syntax error: ...``,
2); like dash, the line is parsed and run one top-level command line at a time.

Programs are started with the method the kernel's shell uses: ``fork-exec`` (under the
kernel's fork policy, or ``cow-pt``/``copy`` explicitly), ``vfork-exec`` or ``spawnfd`` (the fd
model: each command is built through a builder fd and given exactly its descriptors 0, 1
and 2 and those it redirects); the environment variable ``SPAWNFD_METHOD`` overrides it for
one shell.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Union

from .ldso import search_path
from ..spawn import FdSpec, SpawnedProcess, spawn

__all__ = ["sh_main", "parse", "ShellSyntaxError", "Unsupported"]


class ShellSyntaxError(ValueError):
    """The command line does not parse; the message is dash's (``Syntax error: ...``)."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


class Unsupported(ShellSyntaxError):
    """A construct of the shell language that the simulator's sh does not implement."""

    def __init__(self, what: str, line: int = 1) -> None:
        super().__init__(f"{what} is not supported by the simulator's sh", line)


# ---------------------------------------------------------------------------------------
# The syntax tree
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Lit:
    """Literal text of a word; quoted text is neither split nor globbed."""

    text: str
    quoted: bool


@dataclasses.dataclass
class Param:
    """``$name`` / ``${name}`` (``length``: ``${#name}``), or ``${name<op>word}`` with
    ``op`` one of ``-`` ``=`` ``+`` ``?`` (``:`` before it: also when the value is null)."""

    name: str
    quoted: bool
    length: bool = False
    op: str | None = None
    arg: Word | None = None


@dataclasses.dataclass
class CmdSub:
    """``$(...)`` or a backquoted command: its output, trailing newlines stripped."""

    body: list[AndOr]
    quoted: bool


@dataclasses.dataclass
class Tilde:
    """An unquoted ``~`` starting a word: ``$HOME``."""


Part = Union[Lit, Param, CmdSub, Tilde]


@dataclasses.dataclass
class Word:
    """A word as written: its parts, in order."""

    parts: list[Part]

    def literal(self) -> str | None:
        """The word's text if it is one unquoted literal (a reserved word, a name...)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Lit) and not self.parts[0].quoted:
            return self.parts[0].text
        return None


@dataclasses.dataclass
class Redirect:
    """``[fd] op target``."""

    fd: int
    op: str
    target: Word


@dataclasses.dataclass
class Simple:
    """A simple command: assignments, words and redirections."""

    assigns: list[tuple[str, Word]]
    words: list[Word]
    redirects: list[Redirect]
    line: int


@dataclasses.dataclass
class Subshell:
    """``( list )``: run by a forked child shell."""

    body: list[AndOr]
    line: int
    redirects: list[Redirect] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Group:
    """``{ list; }``: run by this shell."""

    body: list[AndOr]
    line: int
    redirects: list[Redirect] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class If:
    """``if``/``elif`` clauses (condition, body) and the ``else`` body."""

    clauses: list[tuple[list[AndOr], list[AndOr]]]
    orelse: list[AndOr] | None
    line: int
    redirects: list[Redirect] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Loop:
    """``while`` (or ``until``) cond ``do`` body ``done``."""

    cond: list[AndOr]
    body: list[AndOr]
    until: bool
    line: int
    redirects: list[Redirect] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class For:
    """``for name [in words]; do body; done`` (no ``in``: the positional parameters)."""

    name: str
    words: list[Word] | None
    body: list[AndOr]
    line: int
    redirects: list[Redirect] = dataclasses.field(default_factory=list)


Command = Union[Simple, Subshell, Group, If, Loop, For]


@dataclasses.dataclass
class Pipeline:
    """``[!] cmd | cmd ...``."""

    commands: list[Command]
    negate: bool


@dataclasses.dataclass
class AndOr:
    """A pipeline, then (``&&`` | ``||``, pipeline) pairs."""

    first: Pipeline
    rest: list[tuple[str, Pipeline]]


# ---------------------------------------------------------------------------------------
# The lexer
# ---------------------------------------------------------------------------------------

_OPERATORS: Final = ("<<-", "&&", "||", ";;", "<<", ">>", "<&", ">&", "<>", ">|",
                     "|", "&", ";", "<", ">", "(", ")")
_REDIRECT_OPS: Final = frozenset({"<", ">", ">>", ">|", "<>", "<&", ">&", "<<", "<<-"})
_RESERVED: Final = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "case", "esac",
                              "while", "until", "for", "{", "}", "!"})
_PLAIN = re.compile(r"[^ \t\n|&;<>()\\'\"$`]+")     # a run of unquoted ordinary characters
_DQ_PLAIN = re.compile(r'[^"\\$`]+')                  # the same inside double quotes
_BRACE_PLAIN = re.compile(r"[^}\\'\"$`]+")            # and in the word of ${x-word}
_BLANKS = re.compile(r"[ \t]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]+")
_NAME_FULL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclasses.dataclass
class Token:
    """``kind``: ``word``, ``op``, ``io`` (a redirection's fd number), ``newline``, ``eof``."""

    kind: str
    value: str
    line: int
    word: Word | None = None


class _Lexer:
    """Tokens from ``src``, on demand (a ``$(`` in a word parses the command inside with a
    parser sharing this lexer, which is how its ``)`` is found)."""

    def __init__(self, src: str, pos: int = 0, line: int = 1) -> None:
        self.src, self.pos, self.line = src, pos, line

    def next(self) -> Token:
        src, n = self.src, len(self.src)
        while True:  # blanks, line continuations, comments
            m = _BLANKS.match(src, self.pos)
            if m:
                self.pos = m.end()
            if src.startswith("\\\n", self.pos):
                self.pos += 2
                self.line += 1
                continue
            if self.pos < n and src[self.pos] == "#":
                end = src.find("\n", self.pos)
                self.pos = n if end < 0 else end
            break
        line = self.line
        if self.pos >= n:
            return Token("eof", "", line)
        c = src[self.pos]
        if c == "\n":
            self.pos += 1
            self.line += 1
            return Token("newline", "\n", line)
        for op in _OPERATORS:
            if src.startswith(op, self.pos):
                self.pos += len(op)
                return Token("op", op, line)
        m = _DIGITS.match(src, self.pos)
        if m and m.end() < n and src[m.end()] in "<>":
            self.pos = m.end()
            return Token("io", m.group(), line)
        start = self.pos
        word = self._word()
        return Token("word", src[start:self.pos], line, word)

    def _word(self) -> Word:
        src, n = self.src, len(self.src)
        parts: list[Part] = []
        if src.startswith("~", self.pos):
            m = _NAME.match(src, self.pos + 1)
            end = m.end() if m else self.pos + 1
            if end < n and src[end] not in "/ \t\n|&;<>()":
                pass  # ~+, ~"x"...: not a tilde-prefix dash expands, the text as it is
            elif end == self.pos + 1:
                parts.append(Tilde())
                self.pos += 1
            else:
                raise Unsupported(f"~{src[self.pos + 1:end]} (another user's home)", self.line)
        while self.pos < n:
            c = src[self.pos]
            if c in " \t\n|&;<>()":
                break
            m = _PLAIN.match(src, self.pos)
            if m:
                parts.append(Lit(m.group(), False))
                self.pos = m.end()
            elif c == "\\":
                if src.startswith("\\\n", self.pos):
                    self.line += 1
                    self.pos += 2
                elif self.pos + 1 < n:
                    parts.append(Lit(src[self.pos + 1], True))
                    self.pos += 2
                else:
                    parts.append(Lit("\\", True))
                    self.pos += 1
            elif c == "'":
                end = src.find("'", self.pos + 1)
                if end < 0:
                    raise ShellSyntaxError("Syntax error: Unterminated quoted string", self.line)
                text = src[self.pos + 1:end]
                parts.append(Lit(text, True))
                self.line += text.count("\n")
                self.pos = end + 1
            elif c == '"':
                self._double_quoted(parts)
            elif c == "$":
                self._dollar(parts, False)
            else:  # "`"
                self._backquoted(parts, False)
        return Word(parts)

    def _double_quoted(self, parts: list[Part]) -> None:
        src, n = self.src, len(self.src)
        line = self.line
        self.pos += 1
        parts.append(Lit("", True))  # "" is a word of its own
        while True:
            if self.pos >= n:
                raise ShellSyntaxError("Syntax error: Unterminated quoted string", line)
            c = src[self.pos]
            if c == '"':
                self.pos += 1
                return
            m = _DQ_PLAIN.match(src, self.pos)
            if m:
                parts.append(Lit(m.group(), True))
                self.line += m.group().count("\n")
                self.pos = m.end()
            elif c == "\\":
                nxt = src[self.pos + 1:self.pos + 2]
                if nxt == "\n":
                    self.line += 1
                    self.pos += 2
                elif nxt and nxt in '$`"\\':
                    parts.append(Lit(nxt, True))
                    self.pos += 2
                else:
                    parts.append(Lit("\\", True))
                    self.pos += 1
            elif c == "$":
                self._dollar(parts, True)
            else:
                self._backquoted(parts, True)

    def _dollar(self, parts: list[Part], quoted: bool) -> None:
        src, n = self.src, len(self.src)
        nxt = src[self.pos + 1:self.pos + 2]
        if nxt == "(":
            if src.startswith("((", self.pos + 1):
                raise Unsupported("arithmetic expansion $((...))", self.line)
            self.pos += 2
            body = _Parser(self).substitution()
            parts.append(CmdSub(body, quoted))
        elif nxt == "{":
            p = self.pos + 2
            length = src.startswith("#", p) and p + 1 < n and (
                src[p + 1].isalnum() or src[p + 1] in "_?$@*!#")
            if length:
                p += 1
            m = _NAME.match(src, p) or _DIGITS.match(src, p)
            if m:
                name, p = m.group(), m.end()
            elif p < n and src[p] in "?$#@*!-":
                name, p = src[p], p + 1
            else:
                raise ShellSyntaxError("Syntax error: Bad substitution", self.line)
            if p >= n:
                raise ShellSyntaxError("Syntax error: Missing '}'", self.line)
            if src[p] != "}":
                op = src[p:p + 2] if src[p] == ":" else src[p]
                if length or op not in ("-", "=", "+", "?", ":-", ":=", ":+", ":?"):
                    raise Unsupported(f"parameter expansion ${{{name}{src[p]}...}}",
                                      self.line)
                self.pos = p + len(op)
                parts.append(Param(name, quoted, False, op, self._brace_word(quoted)))
                return
            parts.append(Param(name, quoted, length))
            self.pos = p + 1
        else:
            m = _NAME.match(src, self.pos + 1)
            if m:
                parts.append(Param(m.group(), quoted))
                self.pos = m.end()
            elif nxt and (nxt.isdigit() or nxt in "?$#@*!-"):
                parts.append(Param(nxt, quoted))
                self.pos += 2
            else:
                parts.append(Lit("$", quoted))
                self.pos += 1

    def _brace_word(self, quoted: bool) -> Word:
        """The word of ``${name<op>word}``, up to its ``}`` (taken): quoted as the
        expansion is, blanks and operators are part of it."""
        src, n = self.src, len(self.src)
        line = self.line
        parts: list[Part] = []
        if not quoted and src.startswith("~", self.pos) and src[self.pos + 1:self.pos + 2] in (
                "/", "}"):
            parts.append(Tilde())
            self.pos += 1
        while True:
            if self.pos >= n:
                raise ShellSyntaxError("Syntax error: Missing '}'", line)
            c = src[self.pos]
            if c == "}":
                self.pos += 1
                return Word(parts)
            m = _BRACE_PLAIN.match(src, self.pos)
            if m:
                parts.append(Lit(m.group(), quoted))
                self.line += m.group().count("\n")
                self.pos = m.end()
            elif c == "\\":
                nxt = src[self.pos + 1:self.pos + 2]
                if nxt == "\n":
                    self.line += 1
                    self.pos += 2
                elif nxt and (not quoted or nxt in '$`"\\}'):
                    parts.append(Lit(nxt, True))
                    self.pos += 2
                else:
                    parts.append(Lit("\\", True))
                    self.pos += 1
            elif c == "'" and quoted:
                parts.append(Lit("'", True))
                self.pos += 1
            elif c == "'":
                end = src.find("'", self.pos + 1)
                if end < 0:
                    raise ShellSyntaxError("Syntax error: Unterminated quoted string", line)
                parts.append(Lit(src[self.pos + 1:end], True))
                self.line += src.count("\n", self.pos, end)
                self.pos = end + 1
            elif c == '"':  # (inside "${x-...}" too: quotes again, as dash)
                self._double_quoted(parts)
            elif c == "$":
                self._dollar(parts, quoted)
            else:
                self._backquoted(parts, quoted)

    def _backquoted(self, parts: list[Part], quoted: bool) -> None:
        src, n = self.src, len(self.src)
        line = self.line
        p = self.pos + 1
        out: list[str] = []
        while True:
            if p >= n:
                raise ShellSyntaxError("Syntax error: EOF in backquote substitution", line)
            c = src[p]
            if c == "`":
                break
            if c == "\\" and p + 1 < n and (src[p + 1] in "$`\\" or (quoted and src[p + 1] == '"')):
                out.append(src[p + 1])
                p += 2
                continue
            out.append(c)
            p += 1
        text = "".join(out)
        self.line += src.count("\n", self.pos, p)
        self.pos = p + 1
        parser = _Parser(_Lexer(text, 0, line))
        body = parser.compound_list(())
        t = parser.take()
        if t.kind != "eof":
            raise parser.unexpected(t)
        parts.append(CmdSub(body, quoted))


# ---------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------

def _describe(t: Token) -> str:
    if t.kind == "eof":
        return "end of file"
    if t.kind == "newline":
        return "newline"
    return f'"{t.value}"'


class _Parser:
    """Recursive descent over :class:`_Lexer`'s tokens, one token of lookahead."""

    def __init__(self, lexer: _Lexer) -> None:
        self.lx = lexer
        self.tok: Token | None = None

    def peek(self) -> Token:
        if self.tok is None:
            self.tok = self.lx.next()
        return self.tok

    def take(self) -> Token:
        t = self.peek()
        self.tok = None
        return t

    def unexpected(self, t: Token, expecting: str | None = None) -> ShellSyntaxError:
        more = f' (expecting "{expecting}")' if expecting else ""
        return ShellSyntaxError(f"Syntax error: {_describe(t)} unexpected{more}", t.line)

    def _reserved(self, t: Token, *words: str) -> bool:
        return t.kind == "word" and t.word is not None and t.word.literal() in words

    def _op(self, t: Token, *ops: str) -> bool:
        return t.kind == "op" and t.value in ops

    def linebreak(self) -> None:
        while self.peek().kind == "newline":
            self.take()

    def complete_command(self) -> list[AndOr] | None:
        """The next top-level command line (up to a newline), or None at the end."""
        self.linebreak()
        if self.peek().kind == "eof":
            return None
        items = [self.and_or()]
        while True:
            t = self.peek()
            if self._op(t, ";"):
                self.take()
                if self.peek().kind in ("newline", "eof"):
                    continue
                items.append(self.and_or())
            elif self._op(t, "&"):
                raise Unsupported("a background job (&)", t.line)
            elif t.kind == "newline":
                self.take()
                return items
            elif t.kind == "eof":
                return items
            else:
                raise self.unexpected(t)

    def compound_list(self, enders: tuple[str, ...]) -> list[AndOr]:
        """and_or lists separated by ';' or newlines, up to one of ``enders`` (reserved
        words, or ')') or the end, which is left for the caller."""
        items: list[AndOr] = []
        self.linebreak()
        while True:
            t = self.peek()
            if t.kind == "eof" or (self._op(t, ")") and ")" in enders) or \
                    self._reserved(t, *enders):
                break
            items.append(self.and_or())
            t = self.peek()
            if self._op(t, ";"):
                self.take()
                self.linebreak()
            elif t.kind == "newline":
                self.linebreak()
            elif self._op(t, "&"):
                raise Unsupported("a background job (&)", t.line)
            else:
                break
        return items

    def _body(self, enders: tuple[str, ...]) -> list[AndOr]:
        body = self.compound_list(enders)
        if not body:
            t = self.peek()
            raise self.unexpected(t, enders[-1] if t.kind == "eof" else None)
        return body

    def expect(self, word: str) -> Token:
        t = self.take()
        if (word == ")" and self._op(t, ")")) or (word != ")" and self._reserved(t, word)):
            return t
        raise self.unexpected(t, word)

    def substitution(self) -> list[AndOr]:
        """The inside of ``$( ... )``, its ``)`` taken (and nothing after it)."""
        body = self.compound_list((")",))
        self.expect(")")
        return body

    def and_or(self) -> AndOr:
        first = self.pipeline()
        rest: list[tuple[str, Pipeline]] = []
        while self._op(self.peek(), "&&", "||"):
            op = self.take().value
            self.linebreak()
            rest.append((op, self.pipeline()))
        return AndOr(first, rest)

    def pipeline(self) -> Pipeline:
        negate = False
        if self._reserved(self.peek(), "!"):
            self.take()
            negate = True
        cmds = [self.command()]
        while self._op(self.peek(), "|"):
            self.take()
            self.linebreak()
            cmds.append(self.command())
        return Pipeline(cmds, negate)

    def command(self) -> Command:
        t = self.peek()
        node: Command
        if self._op(t, "("):
            self.take()
            body = self._body((")",))
            self.expect(")")
            node = Subshell(body, t.line)
        elif t.kind == "word" and t.word is not None and t.word.literal() in _RESERVED:
            word = t.word.literal()
            if word == "{":
                self.take()
                body = self._body(("}",))
                self.expect("}")
                node = Group(body, t.line)
            elif word == "if":
                node = self._if()
            elif word in ("while", "until"):
                self.take()
                cond = self._body(("do",))
                self.expect("do")
                body = self._body(("done",))
                self.expect("done")
                node = Loop(cond, body, word == "until", t.line)
            elif word == "for":
                node = self._for()
            elif word == "case":
                raise Unsupported("case", t.line)
            else:
                raise self.unexpected(t)
        else:
            return self.simple()
        while self.peek().kind == "io" or self._op(self.peek(), *_REDIRECT_OPS):
            node.redirects.append(self.redirect())
        return node

    def _if(self) -> If:
        line = self.take().line
        clauses: list[tuple[list[AndOr], list[AndOr]]] = []
        orelse = None
        while True:
            cond = self._body(("then",))
            self.expect("then")
            clauses.append((cond, self._body(("elif", "else", "fi"))))
            if self._reserved(self.peek(), "elif"):
                self.take()
                continue
            break
        if self._reserved(self.peek(), "else"):
            self.take()
            orelse = self._body(("fi",))
        self.expect("fi")
        return If(clauses, orelse, line)

    def _for(self) -> For:
        line = self.take().line
        t = self.take()
        name = t.word.literal() if t.kind == "word" and t.word is not None else None
        if name is None or not _NAME_FULL.match(name):
            raise ShellSyntaxError("Syntax error: Bad for loop variable", t.line)
        self.linebreak()
        words: list[Word] | None = None
        if self._reserved(self.peek(), "in"):
            self.take()
            words = []
            while self.peek().kind == "word":
                w = self.take().word
                assert w is not None
                words.append(w)
            t = self.take()
            if not (self._op(t, ";") or t.kind == "newline"):
                raise self.unexpected(t)
            self.linebreak()
        elif self._op(self.peek(), ";"):
            self.take()
            self.linebreak()
        self.expect("do")
        body = self._body(("done",))
        self.expect("done")
        return For(name, words, body, line)

    def redirect(self) -> Redirect:
        t = self.take()
        fd = None
        if t.kind == "io":
            fd = int(t.value)
            t = self.take()
            if not self._op(t, *_REDIRECT_OPS):
                raise self.unexpected(t)
        if t.value in ("<<", "<<-"):
            raise Unsupported("a here-document (<<)", t.line)
        target = self.take()
        if target.kind != "word" or target.word is None:
            raise self.unexpected(target)
        if t.value in ("<&", ">&") and target.word.literal() == "-":
            raise Unsupported(f"closing a descriptor ({t.value}-)", t.line)
        if fd is None:
            fd = 0 if t.value in ("<", "<&", "<>") else 1
        return Redirect(fd, t.value, target.word)

    def simple(self) -> Simple:
        line = self.peek().line
        cmd = Simple([], [], [], line)
        while True:
            t = self.peek()
            if t.kind == "io" or self._op(t, *_REDIRECT_OPS):
                cmd.redirects.append(self.redirect())
            elif t.kind == "word" and t.word is not None:
                self.take()
                name = _assignment_name(t.word) if not cmd.words else None
                if name is not None:
                    first = t.word.parts[0]
                    assert isinstance(first, Lit)
                    value = _assignment_tildes(first.text[len(name) + 1:],
                                               len(t.word.parts) > 1, t.line)
                    cmd.assigns.append((name, Word([*value, *t.word.parts[1:]])))
                else:
                    cmd.words.append(t.word)
                    if len(cmd.words) == 1 and not cmd.assigns and self._op(self.peek(), "("):
                        raise Unsupported("a function definition", t.line)
            else:
                break
        if not (cmd.assigns or cmd.words or cmd.redirects):
            raise self.unexpected(self.peek())
        return cmd


def _assignment_name(word: Word) -> str | None:
    first = word.parts[0] if word.parts else None
    if isinstance(first, Lit) and not first.quoted and "=" in first.text:
        name = first.text.split("=", 1)[0]
        if _NAME_FULL.match(name):
            return name
    return None


def _assignment_tildes(text: str, more: bool, line: int) -> list[Part]:
    """An assignment value's leading unquoted text, with a ``~`` after the ``=`` or after
    a ``:`` (up to a ``/``, a ``:`` or the end) as ``$HOME``, as dash expands them."""
    if "~" not in text:
        return [Lit(text, False)]
    parts: list[Part] = []
    for i, piece in enumerate(text.split(":")):
        if i:
            parts.append(Lit(":", False))
        last = i == text.count(":")
        head, slash, rest = piece.partition("/")
        if head == "~" and (slash or not (last and more)):
            parts += [Tilde(), Lit(slash + rest, False)]
        elif head.startswith("~") and _NAME_FULL.match(head[1:]) and (slash or not last
                                                                        or not more):
            raise Unsupported(f"{head} (another user's home)", line)
        else:
            parts.append(Lit(piece, False))
    return parts


def parse(line: str) -> list[list[AndOr]]:
    """The whole command line as a list of top-level command lines (each a list of and-or
    lists). Raises :class:`ShellSyntaxError` (or :class:`Unsupported`)."""
    parser = _Parser(_Lexer(line))
    out = []
    while (cmd := parser.complete_command()) is not None:
        out.append(cmd)
    return out


# ---------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------

class _ExitShell(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class _LoopControl(Exception):
    def __init__(self, levels: int, is_break: bool) -> None:
        self.levels, self.is_break = levels, is_break


class _Failed(Exception):
    """A command failed before it ran (the message is said): its status."""

    def __init__(self, status: int) -> None:
        self.status = status


_SPECIAL: Final = frozenset({":", "exit", "export", "unset", "shift", "break", "continue"})
_REGULAR: Final = frozenset({"cd", "pwd", "read"})
_NOT_SIMULATED: Final = frozenset({
    ".", "alias", "bg", "command", "eval", "exec", "fc", "fg", "getopts", "hash", "jobs",
    "local", "readonly", "return", "set", "times", "trap", "type", "ulimit", "umask",
    "unalias", "wait"})
_FORK_MODES: Final = frozenset({"copy", "cow-pt", "cow-pt-eager"})
_REDIRECT_FLAGS: Final = {"<": os.O_RDONLY, ">": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                          ">|": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                          ">>": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                          "<>": os.O_RDWR | os.O_CREAT}
# dash keeps its variables in a 39-bucket hash table and passes the exported ones to a
# program in table order: the built-in variables at the head of their bucket (last first),
# the others after them in the order they were created (dash's var.c: hashvar, initvar).
_DASH_VARINIT: Final = ("IFS", "MAIL", "MAILPATH", "PATH", "PS1", "PS2", "PS4", "OPTIND",
                        "LINENO")
_DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_GLOB = re.compile(r"[*?]|\[.+\]", re.S)
_ECHO_OPTION = re.compile(r"-[neE]+\Z")


# The root directory's (st_dev, st_ino) in each kernel: a shell without $PWD checks "." once.
_ROOT_IDS: weakref.WeakKeyDictionary[Any, tuple[int, int] | None] = weakref.WeakKeyDictionary()


def _dash_bucket(name: str) -> int:
    data = name.encode(errors="surrogateescape")
    return ((data[0] << 4) + sum(data)) % 39 if data else 0


def _wait_code(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _dash_errmsg(e: OSError, creating: bool) -> str:
    """dash's errmsg(): its own words for ENOENT/ENOTDIR, strerror for the rest."""
    if e.errno in (2, 20):  # ENOENT, ENOTDIR
        return "Directory nonexistent" if creating else "No such file"
    return e.strerror or str(e)


@dataclasses.dataclass
class _Text:
    """During expansion: text that came out of an unquoted ``${x-word}``, split as a
    parameter's value is."""

    text: str


@dataclasses.dataclass
class _Redirected:
    """A command's redirections resolved in the shell: ``fds`` maps the command's
    descriptors to the shell's (0, 1 and 2 to begin with, or the pipe ends), ``steps`` are
    the dup2s in order, ``opened`` the files the shell opened for them (closed once the
    command has them)."""

    fds: dict[int, int]
    steps: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    opened: list[int] = dataclasses.field(default_factory=list)

    def err(self, shell: _Shell) -> int | None:
        """The shell's descriptor that is the command's stderr, if it has one."""
        fd = self.fds.get(2)
        return fd if fd is not None and shell._is_open(fd) else None

    def close(self, sys: Any) -> None:
        for fd in self.opened:
            sys.close(fd)
        self.opened = []


class _Shell:
    """One shell process's state: variables, positional parameters, ``$?``, the logical
    working directory; a forked subshell gets a copy."""

    def __init__(self, sys: Any, arg0: str, args: list[str], env: dict[str, str]) -> None:
        self.sys = sys
        self.arg0, self.args = arg0, args
        self.vars: dict[str, str] = {"IFS": " \t\n", "OPTIND": "1", "PS1": "$ ", "PS2": "> ",
                                     "PS4": "+ "}
        self.exported: set[str] = set()
        for k, v in env.items():
            if k != "IFS":  # dash keeps its own IFS (exported if the environment had one)
                self.vars[k] = v
            self.exported.add(k)
        self.method = env.get("SPAWNFD_METHOD") or sys.proc.kernel.shell_method
        self.fork_mode: str | None = self.method if self.method in _FORK_MODES else None
        self.status = 0
        self.subst_status: int | None = None
        self.line = 1
        self.shell_pid = sys.pid
        self.loop_depth = 0
        self._readbuf = bytearray()
        self.cwd = self._initial_cwd(env.get("PWD"))
        if self.cwd is not None:
            self.setvar("PWD", self.cwd, export=True)
        try:
            self.vars["PPID"] = str(sys.proc.kernel._c.ppid(sys.pid))
        except OSError:
            pass

    def _initial_cwd(self, pwd: str | None) -> str | None:
        """$PWD if it names the working directory (as dash checks), else ``/`` if that is
        it; else unknown (``pwd`` then refuses)."""
        here = self._dir_id(".")
        if here is None:
            return None
        if pwd and pwd.startswith("/") and self._dir_id(pwd) == here:
            return pwd
        kernel = self.sys.proc.kernel
        root = _ROOT_IDS.get(kernel)
        if root is None:
            root = _ROOT_IDS[kernel] = self._dir_id("/")
        return "/" if root == here else None

    def _dir_id(self, path: str) -> tuple[int, int] | None:
        try:
            fd = self.sys.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = self.sys.proc.fstat(fd)
            return st.st_dev, st.st_ino
        finally:
            self.sys.close(fd)

    def forked(self, csys: Any) -> _Shell:
        """A copy for a forked child (a subshell): the same variables, ``$$`` unchanged."""
        sub = object.__new__(_Shell)
        sub.__dict__.update(self.__dict__)
        sub.sys = csys
        sub.vars = dict(self.vars)
        sub.exported = set(self.exported)
        sub.args = list(self.args)
        sub._readbuf = bytearray()
        return sub

    # ---- messages and variables ----
    async def say(self, message: str, fd: int | None = 2) -> None:
        """``sh: N: message`` on the shell's stderr (as dash: $0, the line), or on ``fd``:
        the stderr of a command whose redirections were made; no stderr, nothing said."""
        if fd is None:
            return
        try:
            await self.sys.write(fd, f"{self.arg0}: {self.line}: {message}\n".encode(
                errors="surrogateescape"))
        except OSError:
            pass

    def setvar(self, name: str, value: str, export: bool = False) -> None:
        self.vars[name] = value
        if export:
            self.exported.add(name)

    def child_env(self, extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
        """The environment of a program: the exported variables and the command's own
        assignments, in dash's order."""
        values = {n: v for n, v in self.vars.items() if n in self.exported}
        order = {n: i for i, n in enumerate(self.vars)}
        for n, v in extra:
            values[n] = v
            order.setdefault(n, len(order))

        def key(n: str) -> tuple[int, int, int]:
            if n in _DASH_VARINIT:
                return _dash_bucket(n), 0, -_DASH_VARINIT.index(n)
            return _dash_bucket(n), 1, order[n]

        return {n: values[n] for n in sorted(values, key=key)}

    def param(self, name: str) -> str:
        if name == "?":
            return str(self.status)
        if name == "$":
            return str(self.shell_pid)
        if name == "#":
            return str(len(self.args))
        if name in ("@", "*"):
            return " ".join(self.args)
        if name == "0":
            return self.arg0
        if name.isdigit():
            i = int(name)
            return self.args[i - 1] if i <= len(self.args) else ""
        if name in ("!", "-"):
            return ""
        return self.vars.get(name, "")

    # ---- expansion ----
    async def expand(self, word: Word, split: bool = True) -> list[str]:
        """A word's fields: expansions done, unquoted expansions split on $IFS (``split``);
        without ``split`` one field (assignment values, redirection targets)."""
        fields: list[str] = []
        cur: list[str] = []
        have = False       # the field under construction exists (even if empty)
        unquoted: list[str] = []  # its unquoted characters, for the pathname check
        ifs = self.vars.get("IFS", " \t\n") if split else ""
        if ifs and ifs.strip(" \t\n"):
            raise Unsupported(f"field splitting on IFS={ifs!r}", self.line)
        seps = re.compile(f"[{re.escape(ifs)}]+") if ifs else None

        def finish() -> None:
            nonlocal cur, have, unquoted
            if have:
                field = "".join(cur)
                if split and _GLOB.search("".join(unquoted)):
                    raise Unsupported(f"pathname expansion ({field})", self.line)
                fields.append(field)
            cur, have, unquoted = [], False, []

        todo: list[Part | _Text] = list(reversed(word.parts))
        while todo:
            part = todo.pop()
            if isinstance(part, Param) and part.op is not None:
                todo += reversed(await self._param_op(part))
                continue
            if isinstance(part, _Text):  # an unquoted ${x-word}'s text: split as a value
                value = part.text
            elif isinstance(part, Lit):
                cur.append(part.text)
                have = have or part.quoted or bool(part.text)
                if not part.quoted:
                    unquoted.append(part.text)
                continue
            elif isinstance(part, Tilde):
                cur.append(self.vars.get("HOME", ""))
                have = True
                continue
            elif isinstance(part, Param):
                if part.quoted and part.name == "@" and not part.length and split:
                    if not self.args and not "".join(cur):
                        have = False  # "$@" without parameters: no field at all
                    for i, a in enumerate(self.args):
                        if i:
                            finish()
                        cur.append(a)
                        have = True
                    continue
                value = self.param(part.name)
                if part.length:
                    value = str(len(value))
            else:
                value = await self.command_substitution(part.body)
            quoted = not isinstance(part, _Text) and part.quoted
            if quoted or seps is None:
                cur.append(value)
                have = have or quoted or bool(value)
                if not quoted:
                    unquoted.append(value)
                continue
            pieces = seps.split(value)
            for i, piece in enumerate(pieces):
                if i:
                    finish()
                if piece:
                    cur.append(piece)
                    unquoted.append(piece)
                    have = True
        finish()
        if not split:
            return ["".join(fields)]
        return fields

    def _is_set(self, name: str) -> bool:
        if name.isdigit() and name != "0":
            return int(name) <= len(self.args)
        if name in ("@", "*"):
            return bool(self.args)
        if name == "!":
            return False
        return name in self.vars or not (name[0].isalpha() or name[0] == "_")

    async def _param_op(self, p: Param) -> list[Part | _Text]:
        """``${name<op>word}``: what stands in its place — the value, or the word's parts
        (an unquoted word's plain text is split like a value)."""
        assert p.op is not None and p.arg is not None
        is_set = self._is_set(p.name)
        value = self.param(p.name) if is_set else ""
        missing = not is_set or (p.op.startswith(":") and not value)
        kind = p.op[-1]
        word: list[Part | _Text] = list(p.arg.parts) if p.quoted else [
            _Text(x.text) if isinstance(x, Lit) and not x.quoted else x for x in p.arg.parts]
        if kind == "+":
            return [Lit("", p.quoted)] + word if not missing else [Lit("", p.quoted)]
        if not missing:
            return [Lit(value, True) if p.quoted else _Text(value)]
        if kind == "-":
            return [Lit("", p.quoted)] + word
        if kind == "=":
            if not _NAME_FULL.match(p.name):
                await self.say(f"{p.name}: bad variable name")  # ${1=x}: dash's words
                raise _ExitShell(2)
            value = (await self.expand(p.arg, split=False))[0]
            self.setvar(p.name, value)
            return [Lit(value, True) if p.quoted else _Text(value)]
        message = (await self.expand(p.arg, split=False))[0] or "parameter not set"
        await self.say(f"{p.name}: {message}")
        raise _ExitShell(2)

    async def expand_words(self, words: list[Word]) -> list[str]:
        out: list[str] = []
        for w in words:
            out += await self.expand(w)
        return out

    async def command_substitution(self, body: list[AndOr]) -> str:
        """Run ``body`` in a forked subshell writing into a pipe; its output without the
        trailing newlines. Its status is what an assignment-only command returns."""
        sys = self.sys
        r, w = sys.pipe(os.O_CLOEXEC)

        def setup(csys: Any) -> None:
            if w != 1:
                csys.dup2(w, 1)
                csys.close(w)
            if r != 1:
                csys.close(r)

        pid = await self.fork(lambda sub: sub.run_body(body), setup)
        sys.close(w)
        chunks: list[bytes] = []
        try:
            while data := await sys.read(r, 65536):
                chunks.append(data)
        finally:
            sys.close(r)
        _, status = await sys.wait(pid)
        self.subst_status = _wait_code(status)
        return b"".join(chunks).decode(errors="surrogateescape").rstrip("\n")

    async def fork(self, run: Callable[[_Shell], Awaitable[int]],
                   setup: Callable[[Any], None] = lambda csys: None) -> int:
        """A forked child shell that calls ``setup(its sys)`` then runs ``run(its shell)``;
        returns its pid."""
        async def child(csys: Any) -> int:
            sub = self.forked(csys)
            try:
                setup(csys)
                return await run(sub)
            except _ExitShell as e:
                return e.code
            except _LoopControl:
                return sub.status
            except _Failed as e:
                return e.status
            except ShellSyntaxError as e:
                sub.line = e.line
                await sub.say(str(e))
                return 2

        return int(await self.sys.fork(child, self.fork_mode))

    # ---- lists and pipelines ----
    async def run_body(self, body: list[AndOr]) -> int:
        for item in body:
            await self.run_and_or(item)
        return self.status

    async def run_and_or(self, item: AndOr) -> int:
        status = await self.run_pipeline(item.first)
        for op, pipeline in item.rest:
            if (op == "&&") == (status == 0):
                status = await self.run_pipeline(pipeline)
        return status

    async def run_pipeline(self, p: Pipeline) -> int:
        if len(p.commands) == 1:
            try:
                status = await self.run_command(p.commands[0])
            except _Failed as e:
                status = e.status
        else:
            status = await self._run_piped(p.commands)
        if p.negate:
            status = int(status == 0)
        self.status = status
        return status

    async def _run_piped(self, cmds: list[Command]) -> int:
        sys = self.sys
        waits: list[Callable[[], Awaitable[int]]] = []
        prev: int | None = None
        for i, cmd in enumerate(cmds):
            r = w = None
            if i + 1 < len(cmds):
                r, w = sys.pipe(os.O_CLOEXEC)
            try:
                waits.append(await self._start_in_pipe(cmd, prev, w, r))
            except BaseException:
                if r is not None:
                    sys.close(r)
                raise
            finally:
                if prev is not None:
                    sys.close(prev)
                if w is not None:
                    sys.close(w)
            prev = r
        status = 0
        for wait in waits:
            status = await wait()
        return status

    async def _start_in_pipe(self, cmd: Command, stdin: int | None, stdout: int | None,
                             other: int | None) -> Callable[[], Awaitable[int]]:
        """Start one element of a pipeline; returns how to wait for its exit status."""
        sys = self.sys
        if isinstance(cmd, Simple):
            self.line = cmd.line
            try:
                argv, assigns = await self._expand_simple(cmd)
                if argv and not self._runs_in_shell(argv):
                    started = await self._start_program(argv, assigns, cmd.redirects,
                                                        stdin, stdout)
                    return lambda: self._wait_started(started)
            except _Failed as e:
                code = e.status
                return lambda: self._done(code)

            async def run(sub: _Shell) -> int:
                return await sub._run_expanded(argv, assigns, cmd.redirects)
        else:
            async def run(sub: _Shell) -> int:
                return await sub.run_command(cmd)

        def setup(csys: Any) -> None:
            for fd, target in ((stdin, 0), (stdout, 1)):
                if fd is not None and fd != target:
                    csys.dup2(fd, target)
            for fd in {stdin, stdout, other} - {None, 0, 1}:
                assert fd is not None
                csys.close(fd)

        pid = await self.fork(run, setup)
        return lambda: self._wait_pid(pid)

    async def _done(self, code: int) -> int:
        return code

    async def _wait_pid(self, pid: int) -> int:
        _, status = await self.sys.wait(pid)
        return _wait_code(status)

    async def _wait_started(self, started: SpawnedProcess | int) -> int:
        if isinstance(started, int):
            return started
        return _wait_code(await started.wait())

    # ---- commands ----
    async def run_command(self, cmd: Command) -> int:
        """Run one command in this shell (a subshell forks); returns its status.

        Raises:
            _Failed: a redirection failed (the message is said).
        """
        if isinstance(cmd, Simple):
            self.line = cmd.line
            argv, assigns = await self._expand_simple(cmd)
            return await self._run_expanded(argv, assigns, cmd.redirects)
        self.line = cmd.line
        if isinstance(cmd, Subshell):
            redirects = cmd.redirects

            async def body(sub: _Shell) -> int:
                opened = await sub._open_redirects(redirects)
                sub._apply_redirects(opened)
                return await sub.run_body(cmd.body)

            pid = await self.fork(body)
            return await self._wait_pid(pid)
        opened = await self._open_redirects(cmd.redirects)
        saved = self._apply_redirects(opened, save=True)
        try:
            return await self._run_compound(cmd)
        finally:
            self._restore(saved)

    async def _run_compound(self, cmd: Command) -> int:
        if isinstance(cmd, Group):
            return await self.run_body(cmd.body)
        if isinstance(cmd, If):
            for cond, body in cmd.clauses:
                await self.run_body(cond)
                if self.status == 0:
                    return await self.run_body(body)
            if cmd.orelse is not None:
                return await self.run_body(cmd.orelse)
            self.status = 0
            return 0
        if isinstance(cmd, Loop):
            status = 0
            while True:
                await self.run_body(cmd.cond)
                if (self.status == 0) == cmd.until:
                    break
                status, stop = await self._loop_body(cmd.body)
                if stop:
                    break
            self.status = status
            return status
        assert isinstance(cmd, For)
        items = self.args if cmd.words is None else await self.expand_words(cmd.words)
        status = 0
        for item in items:
            self.setvar(cmd.name, item)
            status, stop = await self._loop_body(cmd.body)
            if stop:
                break
        self.status = status
        return status

    async def _loop_body(self, body: list[AndOr]) -> tuple[int, bool]:
        """One pass of a loop's body: (its status, whether the loop ends: ``break``).
        ``break``/``continue`` of more levels go on to the enclosing loop."""
        self.loop_depth += 1
        try:
            return await self.run_body(body), False
        except _LoopControl as e:
            if e.levels > 1:
                raise _LoopControl(e.levels - 1, e.is_break) from None
            return 0, e.is_break
        finally:
            self.loop_depth -= 1

    async def _expand_simple(self, cmd: Simple) -> tuple[list[str], list[tuple[str, str]]]:
        self.subst_status = None
        argv = await self.expand_words(cmd.words)
        assigns = [(n, (await self.expand(w, split=False))[0]) for n, w in cmd.assigns]
        return argv, assigns

    def _runs_in_shell(self, argv: list[str]) -> bool:
        name = argv[0]
        if name in _NOT_SIMULATED:
            raise Unsupported(f"the built-in {name}", self.line)
        return name in _SPECIAL or name in _REGULAR or (name == "echo" and _dash_echo(argv))

    async def _run_expanded(self, argv: list[str], assigns: list[tuple[str, str]],
                            redirects: list[Redirect]) -> int:
        """A simple command after expansion, in this shell: assignments alone, a built-in,
        or a program (waited for)."""
        if not argv:
            status = self.subst_status or 0
            (await self._open_redirects(redirects)).close(self.sys)
            for n, v in assigns:
                self.setvar(n, v)
            return status
        if self._runs_in_shell(argv):
            special = argv[0] in _SPECIAL
            try:
                opened = await self._open_redirects(redirects)
            except _Failed as e:
                if special:  # a special built-in's error ends a non-interactive shell
                    raise _ExitShell(e.status) from None
                raise
            if special:
                for n, v in assigns:
                    self.setvar(n, v)
            saved = self._apply_redirects(opened, save=True)
            try:
                return await self._builtin(argv)
            finally:
                self._restore(saved)
        started = await self._start_program(argv, assigns, redirects, None, None)
        return await self._wait_started(started)

    # ---- redirections ----
    async def _open_redirects(self, redirects: list[Redirect], stdin: int | None = None,
                              stdout: int | None = None) -> _Redirected:
        """The redirections, in order, as the shell's descriptors: files are opened now
        (close-on-exec), ``n>&m`` names whatever the command's m is by then. A failure is
        said, as dash's child says it, on the command's stderr as far as it is redirected.

        Raises:
            _Failed: status 2, after dash's message.
        """
        red = _Redirected({0: 0 if stdin is None else stdin, 1: 1 if stdout is None else stdout,
                           2: 2})
        try:
            for r in redirects:
                target = (await self.expand(r.target, split=False))[0]
                if r.op in ("<&", ">&"):
                    if not target.isdigit():
                        raise Unsupported(f"{r.op}{target} (a redirection to a file name)",
                                          self.line)
                    src = red.fds.get(int(target), int(target))
                    if not self._is_open(src):
                        await self.say(f"{target}: Bad file descriptor", red.err(self))
                        raise _Failed(2)
                    red.steps.append((r.fd, src))
                    red.fds[r.fd] = src
                    continue
                try:
                    fd = self.sys.open(target, _REDIRECT_FLAGS[r.op] | os.O_CLOEXEC, 0o666)
                except OSError as e:
                    verb = "open" if r.op == "<" else "create"
                    await self.say(f"cannot {verb} {target}: "
                                   f"{_dash_errmsg(e, verb == 'create')}", red.err(self))
                    raise _Failed(2) from None
                if fd < 10:  # kept out of the way of the descriptors redirected (as dash)
                    high = self._dup_high(fd)
                    self.sys.close(fd)
                    fd = high
                red.opened.append(fd)
                red.steps.append((r.fd, fd))
                red.fds[r.fd] = fd
        except BaseException:
            red.close(self.sys)
            raise
        return red

    def _is_open(self, fd: int) -> bool:
        try:
            self.sys.proc.fstat(fd)
        except OSError:
            return False
        return True

    def _apply_redirects(self, red: _Redirected,
                         save: bool = False) -> list[tuple[int, int | None]]:
        """Make the redirections in this process (a built-in's or a compound command's),
        then close the files opened for them; with ``save``, returns how to undo them
        (:meth:`_restore`)."""
        saved: list[tuple[int, int | None]] = []
        done: set[int] = set()
        try:
            for fd, src in red.steps:
                if save and fd not in done:
                    done.add(fd)
                    saved.append((fd, self._dup_high(fd) if self._is_open(fd) else None))
                if src != fd:
                    self.sys.dup2(src, fd)
        except BaseException:
            self._restore(saved)
            raise
        finally:
            red.close(self.sys)
        return saved

    def _dup_high(self, fd: int) -> int:
        """fd duplicated on a free descriptor >= 10, close-on-exec (as dash saves one)."""
        target = 10
        while self._is_open(target):
            target += 1
        return int(self.sys.proc.kernel._c.dup3(self.sys.pid, fd, target, os.O_CLOEXEC))

    def _restore(self, saved: list[tuple[int, int | None]]) -> None:
        for fd, copy in reversed(saved):
            if copy is None:
                try:
                    self.sys.close(fd)
                except OSError:
                    pass
            else:
                self.sys.dup2(copy, fd)
                self.sys.close(copy)

    # ---- programs ----
    async def _start_program(self, argv: list[str], assigns: list[tuple[str, str]],
                             redirects: list[Redirect], stdin: int | None,
                             stdout: int | None) -> SpawnedProcess | int:
        """Start a program with its pipe ends and redirections; returns the child, or the
        status dash gives a command that could not start (after saying why)."""
        sys = self.sys
        red = await self._open_redirects(redirects, stdin, stdout)
        try:
            fds: dict[int, FdSpec] = {fd: src for fd, src in red.fds.items()
                                      if fd > 2 or self._is_open(src)}
            err = red.err(self)  # where the child's messages would go
            name = argv[0]
            path = search_path(sys, name, self.vars.get("PATH", _DEFAULT_PATH).split(":"))
            if path is None:
                await self.say(f"{name}: not found", err)
                return 127
            try:
                return await spawn(sys.proc, path, argv, self.child_env(assigns),
                                   method=self.method, fds=fds)
            except OSError as e:
                if e.errno == errno.ENOEXEC:  # dash would run the file as a script
                    raise Unsupported(f"running {name} (not a binary, no #!) as a script",
                                      self.line) from None
                if isinstance(e, FileNotFoundError) and e.filename == path:
                    await self.say(f"{name}: not found", err)
                    return 127
                if e.filename == path or e.filename is None:
                    await self.say(f"{name}: {e.strerror}", err)
                    return 126
                await self.say(f"cannot open {e.filename}: {_dash_errmsg(e, False)}", err)
                return 2
        finally:
            red.close(sys)

    # ---- built-ins ----
    async def _builtin(self, argv: list[str]) -> int:
        name, args = argv[0], argv[1:]
        if name == ":":
            return 0
        if name == "exit":
            code = self.status
            if args:
                if not args[0].isdigit():
                    await self.say(f"exit: Illegal number: {args[0]}")
                    raise _ExitShell(2)
                code = int(args[0]) & 0xFF
            raise _ExitShell(code)
        if name in ("break", "continue"):
            n = 1
            if args:
                if not args[0].isdigit() or int(args[0]) == 0:
                    await self.say(f"{name}: Illegal number: {args[0]}")
                    raise _ExitShell(2)
                n = int(args[0])
            if not self.loop_depth:
                return 0  # not in a loop: nothing to leave (as dash)
            raise _LoopControl(min(n, self.loop_depth), name == "break")
        if name == "export":
            if not args or args == ["-p"]:
                return await self._out(name, self._export_listing())
            for a in args:
                var, eq, v = a.partition("=")
                if eq:
                    self.setvar(var, v)
                self.exported.add(var)
            return 0
        if name == "unset":
            for var in args:
                if var != "-v":
                    self.vars.pop(var, None)
                    self.exported.discard(var)
            return 0
        if name == "shift":
            n = int(args[0]) if args and args[0].isdigit() else 1
            if n > len(self.args):
                await self.say("shift: can't shift that many")
                raise _ExitShell(2)
            self.args = self.args[n:]
            return 0
        if name == "cd":
            return await self._cd(args)
        if name == "read":
            return await self._read(args)
        if name == "pwd":
            if args and args[0] == "-P":
                raise Unsupported("pwd -P", self.line)
            if self.cwd is None:
                raise Unsupported("pwd in a directory the shell was not told ($PWD)", self.line)
            return await self._out(name, (self.cwd + "\n").encode(errors="surrogateescape"))
        assert name == "echo"
        return await self._out(name, _dash_echo_output(args))

    async def _read(self, args: list[str]) -> int:
        """``read [-r] name...``: one line of stdin split on $IFS whitespace, the last name
        taking the rest; without -r a backslash protects the next character and joins a
        line to the next. Status 1 at end of file. Reads stop at the newline (a byte at a
        time from a pipe, as dash; a block and a seek back from a file)."""
        raw = False
        while args and args[0].startswith("-") and args[0] != "-":
            opt = args.pop(0)
            if opt == "--":
                break
            if opt != "-r":
                raise Unsupported(f"read {opt}", self.line)
            raw = True
        if not args:
            await self.say("read: arg count")
            return 2
        ifs = self.vars.get("IFS", " \t\n")
        if ifs.strip(" \t\n"):
            raise Unsupported(f"read with IFS={ifs!r}", self.line)
        chars: list[tuple[int, bool]] = []   # (byte, protected from splitting)
        status = 1
        escaped = False
        while (b := await self._read_byte()) is not None:
            if escaped:
                escaped = False
                if b != 0x0A:
                    chars.append((b, True))
                continue
            if b == 0x5C and not raw:
                escaped = True
                continue
            if b == 0x0A:
                status = 0
                break
            chars.append((b, False))
        ws = set(ifs.encode())
        i, n = 0, len(chars)
        values: list[str] = []
        for k in range(len(args)):
            while i < n and not chars[i][1] and chars[i][0] in ws:
                i += 1
            if k == len(args) - 1:
                end = n
                while end > i and not chars[end - 1][1] and chars[end - 1][0] in ws:
                    end -= 1
            else:
                end = i
                while end < n and (chars[end][1] or chars[end][0] not in ws):
                    end += 1
            values.append(bytes(c for c, _ in chars[i:end]).decode(errors="surrogateescape"))
            i = end
        for var, value in zip(args, values):
            self.setvar(var, value)
        return status

    async def _read_byte(self) -> int | None:
        """The next byte of fd 0 for ``read``, or None at its end (or a descriptor that
        cannot be read)."""
        buf = self._readbuf
        if not buf:
            try:
                pos = self.sys.lseek(0, 0, os.SEEK_CUR)
            except OSError:
                pos = None
            try:
                data = await self.sys.read(0, 1 if pos is None else 4096)
            except OSError:
                return None
            if not data:
                return None
            if pos is not None:  # a file: keep what follows the line for the next reader
                nl = data.find(b"\n")
                if 0 <= nl < len(data) - 1:
                    self.sys.lseek(0, pos + nl + 1, os.SEEK_SET)
                    data = data[:nl + 1]
            buf.extend(data)
        return buf.pop(0)

    async def _out(self, name: str, data: bytes) -> int:
        """A built-in's output on fd 1; a descriptor that cannot be written is dash's
        ``name: name: I/O error`` and status 1."""
        try:
            await self.sys.write(1, data)
        except OSError:
            await self.say(f"{name}: {name}: I/O error")
            return 1
        return 0

    def _export_listing(self) -> bytes:
        """``export -p``: every exported variable by name, values quoted as dash quotes."""
        lines = []
        for n in sorted(self.exported):
            v = self.vars.get(n)
            lines.append(f"export {n}\n" if v is None else f"export {n}={_dash_quote(v)}\n")
        return "".join(lines).encode(errors="surrogateescape")

    async def _cd(self, args: list[str]) -> int:
        while args and args[0] in ("-L", "-P", "--"):
            if args[0] == "-P":
                raise Unsupported("cd -P", self.line)
            if args.pop(0) == "--":
                break
        target = args[0] if args else self.vars.get("HOME", "")
        announce = False
        if target == "-":
            target, announce = self.vars.get("OLDPWD", ""), True
        if not target:
            return 0
        if target.startswith("/"):
            logical: str | None = _normalise(target)
        elif self.cwd is not None:
            logical = _normalise(self.cwd + "/" + target)
        else:
            logical = None
        try:
            self.sys.chdir(logical or target)
        except OSError:
            await self.say(f"cd: can't cd to {target}")
            return 2
        if self.cwd is not None:
            self.setvar("OLDPWD", self.cwd, export=True)
        self.cwd = logical
        if logical is not None:
            self.setvar("PWD", logical, export=True)
        if announce and logical is not None:
            return await self._out("cd", (logical + "\n").encode(errors="surrogateescape"))
        return 0


def _dash_quote(value: str) -> str:
    """dash's single_quote(): 'text', each run of single quotes as "'"."""
    parts = re.split(r"('+)", value)
    out = []
    for i, p in enumerate(parts):
        if i % 2:
            out.append(f'"{p}"')
        elif p or i == 0:
            out.append(f"'{p}'")
    return "".join(out)


def _normalise(path: str) -> str:
    """A logical path's ``.``, ``..`` and repeated slashes resolved as text (cd -L)."""
    out: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if out:
                out.pop()
        else:
            out.append(comp)
    return "/" + "/".join(out)


def _dash_echo(argv: list[str]) -> bool:
    """Would /bin/echo print these arguments differently from dash's built-in echo?"""
    args = argv[1:]
    if args and args[0] == "-n":
        args = args[1:]
    if args and (_ECHO_OPTION.match(args[0]) or (len(argv) == 2 and args[0] in
                                                  ("--help", "--version"))):
        return True
    return any("\\" in a for a in args)


_ECHO_ESCAPES: Final = {b"a": b"\a", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r",
                        b"t": b"\t", b"v": b"\v", b"\\": b"\\"}
_ECHO_ESCAPE = re.compile(rb"\\(0[0-7]{0,3}|c|.)", re.S)


def _dash_echo_output(args: list[str]) -> bytes:
    """dash's echo: ``-n`` only as the first argument; ``\\n``-style escapes, ``\\0nnn``
    octal, ``\\c`` ends the output."""
    newline = True
    if args and args[0] == "-n":
        args, newline = args[1:], False
    text = " ".join(args).encode(errors="surrogateescape")
    out: list[bytes] = []
    pos = 0
    for m in _ECHO_ESCAPE.finditer(text):
        out.append(text[pos:m.start()])
        pos = m.end()
        e = m.group(1)
        if e == b"c":
            return b"".join(out)
        if e.startswith(b"0"):
            out.append(bytes([int(e[1:] or b"0", 8) & 0xFF]))
        else:
            out.append(_ECHO_ESCAPES.get(e, b"\\" + e))
    out.append(text[pos:])
    if newline:
        out.append(b"\n")
    return b"".join(out)


async def sh_main(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    """``sh -c 'command line' [name [args...]]``: parse and run one top-level command line
    at a time, as dash does (a syntax error stops the shell with status 2 after the lines
    before it ran)."""
    if len(argv) < 3 or argv[1] != "-c":
        name = argv[0] if argv else "sh"
        try:
            await sys.write(2, f"{name}: running sh without -c (options, a script, commands "
                               f"from stdin) is not supported by the simulator's sh\n".encode(
                                   errors="surrogateescape"))
        except OSError:
            pass
        return 2
    arg0 = argv[3] if len(argv) > 3 else argv[0]
    shell = _Shell(sys, arg0, argv[4:], env)
    parser = _Parser(_Lexer(argv[2]))
    try:
        while True:
            try:
                cmd = parser.complete_command()
            except ShellSyntaxError as e:
                shell.line = e.line
                await shell.say(str(e))
                return 2
            if cmd is None:
                return shell.status
            try:
                await shell.run_body(cmd)
            except ShellSyntaxError as e:  # found while running: pathname expansion...
                shell.line = e.line
                await shell.say(str(e))
                return 2
            except _LoopControl:
                pass  # break/continue outside a loop: nothing to leave
    except _ExitShell as e:
        return e.code
