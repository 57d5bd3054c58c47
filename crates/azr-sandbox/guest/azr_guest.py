"""The azr sandbox guest: runs inside CPython compiled to WebAssembly.

The host (crates/azr-sandbox) creates a fresh instance of this component for
every request and calls `execute` once with a JSON request. Operations:

``call``    exec ``program``, then evaluate ``f(<input>)`` and return the repr.
            Options: ``literal_args`` (every argument must be a Python literal),
            ``banned`` (module names the program may not import),
            ``plain_output`` (the result must be built from literal types only
            and its repr must round-trip through ``ast.literal_eval``),
            ``max_output_chars`` (a longer repr is an error, never truncated).
            Instead of ``program`` and ``input`` it may carry ``code`` and
            ``args``: what ``vet`` returned, so the instance compiles nothing.
            ``round_trip`` (default true) re-parses the output repr with
            ``ast.literal_eval``; the host turns it off when the judge parses
            the repr anyway (validation's determinism comparison).
``script``  exec ``code`` as ``__main__``; no output value.
``vet``     the proposal checks that run no code, done once per proposal in
            the reused judge instance: each of ``inputs`` must be literal
            arguments of ``f(...)``, ``program`` must parse and use no
            ``banned`` module. Returns the compiled program and, per input,
            the argument values, all marshalled (base64), for the fresh
            instances that run it (an induction answer is vetted once).
``judge``   compare pairs of literal texts by value with strict types.

``vet`` and ``judge`` run no model-written code (parsing and compiling execute
nothing), so the host keeps reusing one instance for them and their verdicts
cannot be forged.

Once model code has run in an instance, nothing that instance reports can be
trusted (the code may patch ``repr``, ``json`` or this module itself), so the
host never sends a gold answer to an instance that runs solver code, and it
makes every correctness verdict in a separate ``judge`` instance.

Only modules imported while the component is built can be imported at run
time, so the common standard library is imported below, banned modules too:
the import policy is enforced by ``banned``, not by what is available.
"""

import ast
import binascii
import builtins
import gc
import io
import json
import marshal
import re
import sys
import tokenize

import wit_world

PREIMPORTED = (
    # data, text and numbers
    "abc", "array", "ast", "base64", "binascii", "bisect", "builtins", "cmath",
    "codecs", "collections", "collections.abc", "colorsys", "contextlib", "copy",
    "copyreg", "csv", "dataclasses", "decimal", "difflib", "enum", "errno",
    "fractions", "functools", "graphlib", "heapq", "html", "html.parser", "io",
    "ipaddress", "itertools", "json", "keyword", "math", "numbers", "operator",
    "pickle", "pprint", "re", "reprlib", "shlex", "stat", "statistics", "string",
    "struct", "textwrap", "token", "tokenize", "types", "typing", "unicodedata",
    "urllib.parse", "uuid", "weakref", "xml.etree.ElementTree", "zlib",
    # the interpreter and its tools
    "dis", "gc", "inspect", "linecache", "opcode", "traceback", "warnings",
    "argparse", "getopt", "gettext", "locale", "platform", "timeit",
    # files, processes, time and chance: importable, inert or refused in the sandbox
    "calendar", "datetime", "fnmatch", "glob", "hashlib", "hmac", "logging",
    "multiprocessing", "os", "os.path", "pathlib", "queue", "random", "sched",
    "secrets", "selectors", "shutil", "socket", "subprocess", "tempfile",
    "threading", "time", "zoneinfo",
)


def _codec_modules() -> list[str]:
    """Every codec of the standard library, so ``str.encode('shift_jis')`` works."""
    import encodings
    import pkgutil

    return [f"encodings.{m.name}" for m in pkgutil.iter_modules(encodings.__path__)]


UNAVAILABLE = []
for _name in PREIMPORTED + tuple(_codec_modules()):
    try:
        __import__(_name)
    except Exception as _exc:  # recorded so the host's tests can report it
        UNAVAILABLE.append(f"{_name}: {type(_exc).__name__}: {_exc}")
del _name

import random  # noqa: E402  (re-seeded per request from the host's seed)

# Trusted references, captured before any model code can patch them.
_literal_eval = ast.literal_eval
_parse = ast.parse
_dumps = json.dumps
_loads = json.loads
_repr = builtins.repr
_type = builtins.type
_isinstance = builtins.isinstance
_exec = builtins.exec
_eval = builtins.eval
_compile = builtins.compile
_marshal_dumps = marshal.dumps
_marshal_loads = marshal.loads
_b64encode = binascii.b2a_base64
_b64decode = binascii.a2b_base64

_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_PLAIN_CONTAINERS = (list, tuple, dict, set, frozenset)
_MAX_MESSAGE = 2000


class GuestError(Exception):
    """An outcome with an error kind the host understands."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _describe(exc: BaseException) -> str:
    try:
        text = f"{_type(exc).__name__}: {exc}"
    except BaseException:  # a hostile __str__
        text = _type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


# ---------------------------------------------------------------- values


def typed_key(value):
    """A hashable key equal for two values iff they are equal with the same types.

    ``1``, ``True`` and ``1.0`` get different keys; dict and set order is ignored.
    Only literal types are accepted; anything else raises TypeError.
    """
    t = _type(value)
    if t in _PLAIN_SCALARS:
        return (t.__name__, value)
    if t is list or t is tuple:
        return (t.__name__, tuple(typed_key(v) for v in value))
    if t is set or t is frozenset:
        return (t.__name__, frozenset(typed_key(v) for v in value))
    if t is dict:
        return ("dict", frozenset((typed_key(k), typed_key(v)) for k, v in value.items()))
    raise TypeError(f"{t.__name__} is not a literal type")


def _is_plain(value, depth: int = 0) -> bool:
    if depth > 200:
        return False
    t = _type(value)
    if t in _PLAIN_SCALARS:
        return True
    if t is dict:
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    if t in _PLAIN_CONTAINERS:
        return all(_is_plain(v, depth + 1) for v in value)
    return False


def _round_trips(value, text: str) -> bool:
    try:
        return _is_plain(value) and typed_key(_literal_eval(text)) == typed_key(value)
    except Exception:
        return False


# ---------------------------------------------------------------- policy


def _dotted(node) -> str | None:
    parts = []
    while _isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if _isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


_IMPORT_CALLEES = frozenset(
    ("__import__", "builtins.__import__", "importlib.__import__", "importlib.import_module")
)


def _aliases(tree) -> dict:
    """The names the program's imports bind, each to the dotted name it stands
    for: ``import os as o`` binds ``o`` to ``os``, ``from os import path as p``
    binds ``p`` to ``os.path``."""
    names = {}
    for node in ast.walk(tree):
        if _isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
        elif _isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if alias.name != "*":
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def banned_reference(tree, banned) -> str | None:
    """The first banned module or attribute the program refers to, if any.

    Names match on whole dotted components: banning ``time`` bans ``time`` and
    ``time.sleep`` but not ``timeit``; banning ``os.path`` bans
    ``from os import path`` and ``os.path.join`` but not ``os``. Names bound by
    an import are resolved (``import os as o`` makes ``o.path`` ``os.path``), a
    star import of a module with a banned member is banned, and ``__import__``
    or ``import_module`` called with a literal name is an import.
    """

    def hit(name: str) -> str | None:
        for b in banned:
            if name == b or name.startswith(b + "."):
                return b
        return None

    aliases = _aliases(tree)

    def resolved(name: str | None) -> str | None:
        if name is None:
            return None
        head, dot, rest = name.partition(".")
        bound = aliases.get(head)
        return name if bound is None else bound + dot + rest

    dotted_banned = [b for b in banned if "." in b]
    for node in ast.walk(tree):
        found = None
        if _isinstance(node, ast.Import):
            for alias in node.names:
                found = found or hit(alias.name)
        elif _isinstance(node, ast.ImportFrom):
            if node.module and node.level == 0:
                found = hit(node.module)
                for alias in node.names:
                    if alias.name == "*":
                        members = (b for b in dotted_banned if b.startswith(node.module + "."))
                        found = found or next(members, None)
                    else:
                        found = found or hit(f"{node.module}.{alias.name}")
        elif _isinstance(node, ast.Call):
            callee = resolved(_dotted(node.func))
            importing = callee is not None and (
                callee in _IMPORT_CALLEES or callee.endswith(".__import__") or callee == "import_module"
            )
            if importing and node.args and _isinstance(node.args[0], ast.Constant):
                if _isinstance(node.args[0].value, str):
                    found = hit(node.args[0].value)
        elif _isinstance(node, ast.Attribute) and dotted_banned:
            name = resolved(_dotted(node))
            if name is not None:
                for b in dotted_banned:
                    if name == b or name.startswith(b + "."):
                        found = b
                        break
        if found:
            return found
    return None


# ---------------------------------------------------------------- calls


def parse_call(text: str, literal: bool):
    """Parse ``text`` as the argument list of ``f(...)``.

    Returns (args, kwargs) of values when ``literal``, else the compiled call.
    Anything that is not exactly one call of ``f`` (``0) or (True``, ``1), g(2``)
    is rejected by the AST shape, never by string matching.
    """
    source = f"f({text}\n)"
    try:
        tree = _parse(source, mode="eval")
    except SyntaxError as exc:
        raise GuestError("syntax", f"input is not an argument list: {_describe(exc)}") from None
    call = tree.body
    if not (_isinstance(call, ast.Call) and _isinstance(call.func, ast.Name) and call.func.id == "f"):
        raise GuestError("syntax", "input must be exactly the argument list of one call f(...)")
    if not literal:
        return _compile(tree, "<input>", "eval")
    if any(_isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        raise GuestError("syntax", "input arguments must be literal values (no * or ** unpacking)")
    try:
        args = [_literal_eval(a) for a in call.args]
        kwargs = {}
        for k in call.keywords:
            if k.arg in kwargs:
                raise GuestError("syntax", f"keyword argument repeated: {k.arg}")
            kwargs[k.arg] = _literal_eval(k.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise GuestError("syntax", f"input arguments must be literal values: {_describe(exc)}") from None
    return args, kwargs


_WORDS: dict[str, re.Pattern] = {}


def _has_word(text: str, word: str) -> bool:
    pattern = _WORDS.get(word)
    if pattern is None:
        pattern = _WORDS[word] = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])")
    return pattern.search(text) is not None


def may_refer(source: str, banned) -> bool:
    """False only when ``banned_reference`` cannot find anything in ``source``,
    decided from the text without building an AST (most programs import nothing).

    In an ASCII text every rule of ``banned_reference`` needs the word ``import``
    (import statements, ``__import__``, ``import_module``) or, for a dotted
    banned name, each of its parts written as a whole identifier. A non-ASCII
    text always gets the full check: identifiers are NFKC-normalized, so
    ``ｏｓ`` in the source is the name ``os``.
    """
    if not source.isascii() or "import" in source:
        return True
    return any("." in b and all(_has_word(source, part) for part in b.split(".")) for b in banned)


for _part in ("os", "sys", "path", "exit", "environ"):  # the default dotted names, compiled in the snapshot
    _has_word("", _part)
del _part


def _compile_program(source: str, banned, filename: str):
    if not banned or not may_refer(source, banned):
        # Straight from the text, without building Python AST objects. A text
        # that parses but does not compile (`return` outside a function) fails
        # when run, as it does below, so only a parse failure is `syntax`.
        try:
            return _compile(source, filename, "exec")
        except (SyntaxError, ValueError) as exc:
            try:
                _parse(source, filename=filename, mode="exec")
            except (SyntaxError, ValueError):
                raise GuestError("syntax", _describe(exc)) from None
            raise
    try:
        tree = _parse(source, filename=filename, mode="exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: source with NUL bytes
        raise GuestError("syntax", _describe(exc)) from None
    found = banned_reference(tree, banned)
    if found:
        raise GuestError("banned_import", f"the program uses the banned module {found!r}")
    return _compile(tree, filename, "exec")


def _pack(value) -> str:
    return _b64encode(_marshal_dumps(value), newline=False).decode("ascii")


def _unpack(text: str):
    return _marshal_loads(_b64decode(text))


def op_vet(req) -> dict:
    parsed = [parse_call(text, True) for text in req["inputs"]]
    code = _pack(_compile_program(req["program"], req.get("banned") or (), "<program>"))
    return {"ok": True, "code": code, "args": [_pack((tuple(a), kw)) for a, kw in parsed]}


_SHIFTED = []


def _shift_heap() -> None:
    """Take one block from every small-object size class, type free list and a
    few malloc sizes, and keep them alive for the run. The determinism check's
    second run calls this and the first does not, so an object allocated by the
    program lands at another address: outputs that show addresses (``id``,
    default reprs, identity hashes, the order of a set of objects) differ between
    the two runs, as they would between two processes, instead of repeating the
    snapshot's heap layout."""
    keep = _SHIFTED.append
    keep(object())
    keep([])
    keep({})
    keep(set())
    keep(1.5 + len(_SHIFTED))
    keep(10**9 + len(_SHIFTED))
    keep(10**30 + len(_SHIFTED))
    for n in range(1, 21):
        keep(tuple([None] * n))
    for n in range(0, 512, 4):
        keep(b"\0" * n)
    for n in (1 << 10, 4 << 10, 64 << 10):
        keep(bytearray(n))


def op_call(req) -> dict:
    if req.get("shift_heap"):
        _shift_heap()
    if "code" in req:
        literal = True
        parsed = _unpack(req["args"])
        code = _unpack(req["code"])
    else:
        literal = bool(req.get("literal_args", False))
        parsed = parse_call(req["input"], literal)
        code = _compile_program(req["program"], req.get("banned") or (), "<program>")
    namespace = {"__name__": "program", "__builtins__": builtins}
    _exec(code, namespace)
    if literal:
        f = namespace.get("f")
        if f is None:
            raise GuestError("runtime", "NameError: name 'f' is not defined")
        result = f(*parsed[0], **parsed[1])
    else:
        result = _eval(parsed, namespace)
    try:
        text = _repr(result)
    except MemoryError:
        raise
    except BaseException as exc:
        raise GuestError("unrepresentable_output", f"repr failed: {_describe(exc)}") from None
    if _type(text) is not str:
        raise GuestError("unrepresentable_output", "repr did not return a str")
    limit = req.get("max_output_chars")
    if limit is not None and len(text) > limit:
        raise GuestError("output_too_large", f"output repr has {len(text)} characters, limit {limit}")
    if req.get("plain_output") and not (
        _round_trips(result, text) if req.get("round_trip", True) else _is_plain(result)
    ):
        raise GuestError(
            "unrepresentable_output",
            f"output is not a plain value whose repr round-trips through ast.literal_eval: {text[:200]}",
        )
    return {"ok": True, "output": text}


def op_script(req) -> dict:
    code = _compile_program(req["code"], req.get("banned") or (), "<script>")
    _exec(code, {"__name__": "__main__", "__builtins__": builtins})
    return {"ok": True, "output": None}


def _judge_pair(left: str, right: str) -> str:
    # Running out of memory says nothing about the texts: it propagates, and
    # the host reports `memory` and retires this judge.
    left, right = left.strip(), right.strip()
    try:
        a = _literal_eval(left)
    except MemoryError:
        raise
    except BaseException:
        return "left_invalid"
    if left == right:  # one text, one value (validation's two runs mostly agree)
        try:
            typed_key(a)
        except (TypeError, RecursionError):
            return "unequal"
        return "equal"
    try:
        b = _literal_eval(right)
    except MemoryError:
        raise
    except BaseException:
        return "right_invalid"
    try:
        return "equal" if typed_key(a) == typed_key(b) else "unequal"
    except (TypeError, RecursionError):
        return "unequal"


def op_judge(req) -> dict:
    return {"ok": True, "verdicts": [_judge_pair(a, b) for a, b in req["pairs"]]}


# ---------------------------------------------------------------- shape


def _functions(tree) -> list:
    return [n for n in ast.walk(tree) if _isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _binds_otherwise(tree, name: str, entry) -> bool:
    """Whether ``name`` is bound anywhere other than by ``entry``'s ``def`` and
    plain assignments: a parameter, a keyword argument, another function or
    class, ``except … as``, ``global``/``nonlocal``, a match capture, an
    import, a type parameter. Renaming then could change what the program means."""
    for n in ast.walk(tree):
        if _isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found = n is not entry and n.name == name
        elif _isinstance(n, (ast.arg, ast.keyword)):
            found = n.arg == name
        elif _isinstance(n, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)):
            found = n.name == name
        elif _isinstance(n, ast.MatchMapping):
            found = n.rest == name
        elif _isinstance(n, (ast.Global, ast.Nonlocal)):
            found = name in n.names
        elif _isinstance(n, ast.alias):
            found = (n.asname or n.name.split(".")[0]) == name
        else:  # type parameters (Python 3.12+)
            found = _type(n).__name__ in ("TypeVar", "ParamSpec", "TypeVarTuple") and n.name == name
        if found:
            return True
    return False


def _renamed_entry(source: str, tree) -> tuple[str, str]:
    """The program with its entry called ``f``, and the name its entry ``def``
    now has. The entry is the top-level ``f`` if there is one (helpers are
    often written before it), else the first top-level function. Its name is
    replaced by ``f`` wherever the program uses it (the ``def`` and every plain
    reference; not attributes such as ``s.count``), the rest of the text
    untouched; where the name is also bound some other way (a parameter, a
    method, ``except … as``, …), ``f = name`` is appended instead, which
    means the same whatever the program does with the name."""
    top = [n for n in tree.body if _isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not top:
        raise GuestError("syntax", "the program defines no function")
    if any(n.name == "f" for n in top):
        return source, "f"
    entry = top[0]
    old = entry.name
    taken = {n.id for n in ast.walk(tree) if _isinstance(n, ast.Name)} | {n.name for n in _functions(tree)}
    if "f" in taken or _binds_otherwise(tree, "f", None):
        raise GuestError("syntax", f"the entry function is {old!r} and the name 'f' is already used")
    if _binds_otherwise(tree, old, entry):
        return source.rstrip("\n") + f"\n\nf = {old}\n", old
    # AST columns count UTF-8 bytes, token columns characters.
    uses = {(n.lineno, n.col_offset) for n in ast.walk(tree) if _isinstance(n, ast.Name) and n.id == old}
    lines = io.StringIO(source).readlines()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise GuestError("syntax", f"the program does not tokenize: {_describe(exc)}") from None
    spots = []
    for before, token in zip([None, *tokens], tokens):
        if token.type == tokenize.NAME and token.string == old:
            row, col = token.start
            defined = before is not None and before.type == tokenize.NAME and before.string == "def"
            if defined or (row, len(lines[row - 1][:col].encode())) in uses:
                spots.append((row, col))
    for row, col in reversed(spots):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + "f" + line[col + len(old) :]
    return "".join(lines), "f"


def _check_entry(tree, single_function: bool, name: str) -> None:
    top = [n for n in tree.body if _isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    entry = next((n for n in top if n.name == name), None)
    if entry is None:
        raise GuestError("syntax", "the program must define f")
    a = entry.args
    if not (a.posonlyargs or a.args or a.vararg or a.kwonlyargs or a.kwarg):
        raise GuestError("syntax", "f must take at least one argument")
    if single_function and (
        len(_functions(tree)) > 1 or any(_isinstance(n, ast.ClassDef) for n in ast.walk(tree))
    ):
        raise GuestError(
            "syntax", "the program must define exactly one function (helpers and classes are off)"
        )


def _parse_program(source: str):
    try:
        return _parse(source, filename="<program>", mode="exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: NUL bytes
        raise GuestError("syntax", f"the program does not parse: {_describe(exc)}") from None
    except (RecursionError, MemoryError):
        raise GuestError("syntax", "the program does not parse: nested too deeply") from None


def op_shape(req) -> dict:
    """The program with its entry renamed to ``f``, then the entry rules of a
    proposal, decided by this interpreter's parser: the host's Python may be
    older and refuse syntax the program runs with here."""
    source = req["program"].replace("\r\n", "\n").replace("\r", "\n")
    program, entry = _renamed_entry(source, _parse_program(source))
    rules = req.get("rules", "none")
    if rules != "none":
        _check_entry(_parse_program(program), rules == "one_function", entry)
    return {"ok": True, "output": program}


OPS = {"call": op_call, "script": op_script, "vet": op_vet, "judge": op_judge, "shape": op_shape}
TRUSTED_OPS = (op_vet, op_judge, op_shape)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass


def handle(request: str) -> str:
    try:
        req = _loads(request)
        op = OPS[req["op"]]
    except Exception as exc:
        return _dumps({"ok": False, "error": {"kind": "invalid_request", "message": _describe(exc)}})
    if op not in TRUSTED_OPS:
        random.seed()  # from the host's per-run WASI seed, not the build-time state
    try:
        response = op(req)
    except GuestError as exc:
        response = {"ok": False, "error": {"kind": exc.kind, "message": exc.message}}
    except MemoryError as exc:
        response = {"ok": False, "error": {"kind": "memory", "message": _describe(exc)}}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are program outcomes too
        response = {"ok": False, "error": {"kind": "runtime", "message": _describe(exc)}}
    _flush_stdio()
    try:
        return _dumps(response)
    except BaseException as exc:
        return _dumps({"ok": False, "error": {"kind": "runtime", "message": f"response: {_describe(exc)}"}})


class WitWorld(wit_world.WitWorld):
    def execute(self, request: str) -> str:
        if request == "__azr_probe__":
            return _dumps({"unavailable": UNAVAILABLE, "version": sys.version, "hash_probe": hash("azr")})
        return handle(request)


# Everything above lives as long as the interpreter: keep the collector off it,
# so a program's collections neither walk nor dirty the snapshot's heap.
gc.collect()
gc.freeze()
