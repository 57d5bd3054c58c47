"""Every pre-imported standard-library module imports inside the sandbox."""

from __future__ import annotations

import pytest
from azr.sandbox import Sandbox, default_banned_modules

COMMON = [
    "collections",
    "itertools",
    "functools",
    "math",
    "cmath",
    "re",
    "string",
    "heapq",
    "bisect",
    "json",
    "typing",
    "dataclasses",
    "enum",
    "fractions",
    "decimal",
    "statistics",
    "operator",
    "copy",
    "textwrap",
    "unicodedata",
    "array",
    "struct",
    "collections.abc",
    "graphlib",
    "pprint",
    "difflib",
    "base64",
    "binascii",
    "zlib",
    "uuid",
    "timeit",
    "csv",
    "html",
    "urllib.parse",
    "ipaddress",
    "numbers",
    "keyword",
    "types",
    "contextlib",
    "weakref",
    "reprlib",
    "pickle",
]
# The banned standard-library modules (pebble and bcrypt are third-party,
# and dotted entries like os.path are attributes, not modules of their own).
BANNED_BUT_IMPORTABLE = [
    m for m in default_banned_modules() if "." not in m and m not in ("pebble", "bcrypt")
]


@pytest.mark.parametrize("module", COMMON + BANNED_BUT_IMPORTABLE)
def test_module_imports(sandbox: Sandbox, module: str) -> None:
    result = sandbox.run_script(f"import {module}")
    assert result.ok, result.error


def test_codecs_are_available(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "def f(s):\n    return [s.encode(c) for c in ('shift_jis', 'cp1252', 'utf-16-le', 'idna')]", "'ab'"
    )
    assert result.ok, result.error
