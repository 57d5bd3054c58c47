"""How often the determinism check catches an output that follows the order of
a set of strings (the string-hash check of ``validate``; README, "What a
verdict means"). Counts depend on the two snapshots' hash secrets, which each
build draws anew.

    python benches/hash_order_check.py
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from azr.sandbox import Sandbox


def main() -> None:
    rng = random.Random(0)
    letters = [
        "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(n))
        for n in (2, 3, 5, 8, 20)
        for _ in range(50)
    ]
    words = [
        " ".join(rng.choice(["ab", "cd", "x", "yz", "hello", "q"]) for _ in range(rng.choice((2, 3))))
        for _ in range(200)
    ]
    # (name, program, inputs, the members whose order the output can follow)
    checks: list[tuple[str, str, list[str], Callable[[str], set[str]]]] = [
        (
            "list(set(s.split()))",
            "def f(s):\n    return list(set(s.split()))",
            words,
            lambda s: set(s.split()),
        ),
        ("''.join(set(s))", "def f(s):\n    return ''.join(set(s))", letters, set),
        ("hash(s) % 2", "def f(s):\n    return hash(s) % 2", letters, set),
    ]
    sandbox = Sandbox()
    for name, program, inputs, members in checks:
        # Only inputs whose output can depend on the order: two or more distinct members.
        inputs = [s for s in inputs if len(members(s)) >= 2]
        outcomes = sandbox.validate_batch([(program, repr(s)) for s in inputs])
        passed = sum(o.ok for o in outcomes)
        print(f"{name:24s} passed as deterministic: {passed} of {len(inputs)} order-dependent inputs")


if __name__ == "__main__":
    main()
