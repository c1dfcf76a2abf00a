"""An unforgeable pass/fail for a candidate program: the tests and the candidate never share
a process, and only plain data crosses between them.

Two sandboxed runs talk over two pipes. The *judge* runs the benchmark's own test code (and
the HumanEval prompt's helpers) with the entry point replaced by a proxy; each call sends its
arguments, as plain data, to the *callee*, which holds only the candidate's code, calls the
real function and sends back the result, encoded by a strict codec that accepts only plain
built-in values (None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
frozenset; iterators are materialised). The judge decodes that into fresh built-in objects, so
an `__eq__` that is always true, a patched `math.isclose` or builtins, a printed token, an
`exit(0)` from an atexit hook or excepthook: none of it reaches the comparison. The expected
values, the asserts and the test file never enter the callee's sandbox (it cannot read the
judge's files or /proc either: separate mount and PID namespaces and uids). The candidate
passes iff the judge's process exits 0 after the test code made at least one call, and the
callee then exits 0; both statuses come from the sandbox's facts, not from printed text.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from gcop.programs.sandbox import SandboxResult, run_python

# The codec, shared by both sides. Every JSON object is a tag, so json.loads can only build
# plain values. Hand-written: pickle would run code on load, and json alone cannot tell a
# tuple from a list or carry sets and dicts with non-string keys.
CODEC = """\
import json, sys
sys.setrecursionlimit(5000)
sys.set_int_max_str_digits(0)
MAX_ITEMS = 1_000_000
PLAIN = (bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)
def encode(x):
    t = type(x)
    if x is None or t is bool or t is str or t is int or t is float:
        return x
    if t is list:
        return [encode(v) for v in x]
    if t is tuple or t is set or t is frozenset:
        return {"$": t.__name__, "v": [encode(v) for v in x]}
    if t is dict:
        return {"$": "dict", "v": [[encode(k), encode(v)] for k, v in x.items()]}
    if t is bytes:
        return {"$": "bytes", "v": x.hex()}
    if t is complex:
        return {"$": "complex", "v": [x.real, x.imag]}
    for base in PLAIN:  # a subclass travels as its plain value, never as the object
        if isinstance(x, base):
            if base in (list, tuple, set, frozenset, dict):
                return encode(base(x))
            return encode(base.__new__(base, x) if base is not bool else bool(x))
    if hasattr(type(x), "__next__"):  # a generator, map, zip...: its items, as an iterator
        items = []
        for v in x:
            items.append(encode(v))
            if len(items) > MAX_ITEMS:
                raise ValueError("an iterator of more than a million items")
        return {"$": "iter", "v": items}
    raise TypeError(f"not plain data: {t.__module__}.{t.__qualname__}")
def _tag(d):
    kind, v = d["$"], d["v"]
    if kind == "tuple":
        return tuple(v)
    if kind == "set":
        return set(v)
    if kind == "frozenset":
        return frozenset(v)
    if kind == "dict":
        return dict((k, w) for k, w in v)
    if kind == "bytes":
        return bytes.fromhex(v)
    if kind == "complex":
        return complex(float(v[0]), float(v[1]))
    if kind == "iter":
        return iter(v)
    raise ValueError(f"unknown tag {kind!r}")
def dumps(x):
    return json.dumps(encode(x)).encode() + b"\\n"
def loads(line):
    return json.loads(line, object_hook=_tag)
"""

# The callee: loads the candidate, then answers calls until told to stop. It holds no test
# and no expected value; whatever it does to itself can only change the data it sends.
CALLEE = """\
import os, traceback
inbox, outbox = os.fdopen(CONFIG["inbox"], "rb"), os.fdopen(CONFIG["outbox"], "wb")
space = {"__name__": "candidate", "__builtins__": __builtins__}
source = open("candidate.py", encoding="utf-8").read()
exec(compile(source, "candidate.py", "exec"), space)
for line in inbox:
    request = json.loads(line)
    if request.get("stop"):
        break
    try:
        fn = space[request["name"]]
        value = fn(*loads(request["args"]), **loads(request["kwargs"]))
        reply = json.dumps({"value": dumps(value).decode()}).encode() + b"\\n"
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        reply = json.dumps({"raised": type(e).__name__, "message": str(e)[:300]}).encode()
        reply += b"\\n"
    outbox.write(reply)
    outbox.flush()
"""

# The judge: the benchmark's own test code, with every call of the candidate sent to the
# callee. It never loads the candidate's code.
JUDGE = """\
import builtins, os
inbox, outbox = os.fdopen(CONFIG["inbox"], "rb"), os.fdopen(CONFIG["outbox"], "wb")
LINE_LIMIT = 64 << 20
calls = 0
class CandidateError(Exception):
    pass
class Remote:
    def __init__(self, name):
        self.__name__ = name
    def __call__(self, *args, **kwargs):
        global calls
        request = {"name": self.__name__, "args": dumps(list(args)).decode(),
                   "kwargs": dumps(kwargs).decode()}
        outbox.write(json.dumps(request).encode() + b"\\n")
        outbox.flush()
        line = inbox.readline(LINE_LIMIT)
        if not line.endswith(b"\\n"):
            raise CandidateError("the candidate's process ended or sent a malformed reply")
        calls += 1
        reply = json.loads(line)
        if type(reply) is not dict or set(reply) not in ({"value"}, {"raised", "message"}):
            raise CandidateError("a malformed reply")
        if "raised" in reply:
            kind = getattr(builtins, str(reply["raised"]), None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = CandidateError
            raise kind(str(reply["message"]))
        return loads(str(reply["value"]))
space = {"__name__": "__main__"}
exec(compile(open("context.py", encoding="utf-8").read(), "context.py", "exec"), space)
for name in CONFIG["remote"]:
    space[name] = Remote(name)
exec(compile(open("tests.py", encoding="utf-8").read(), "tests.py", "exec"), space)
if CONFIG["check"]:
    space["check"](Remote(CONFIG["entry"]))
if calls == 0:
    raise SystemExit("the tests never called the candidate")
outbox.write(b'{"stop": true}\\n')
outbox.flush()
"""


def _script(body: str, **config: object) -> str:
    """A side's script: its settings (plain literals), the codec, then its code."""
    return f"CONFIG = {config!r}\n{CODEC}{body}"


@dataclass(frozen=True)
class Judgement:
    """`passed` is decided here, from the two runs' statuses; `reason` says why not."""

    passed: bool
    reason: str
    judge: SandboxResult | None  # None: not run (the example or the code was unusable)
    callee: SandboxResult | None


def judge(candidate: str, context: str, tests: str, *, entry_point: str, remote: list[str],
          check: bool, timeout_s: float = 10.0, memory_mb: int = 1024) -> Judgement:  # fmt: skip
    """Run `tests` (after `context`, trusted benchmark code) against `candidate`.

    `remote`: names the tests call that belong to the candidate (MBPP: the functions its
    asserts call); `check`: HumanEval style, call `check(<proxy of entry_point>)` at the end.
    """
    to_callee, to_judge = os.pipe(), os.pipe()  # (read, write) each
    judge_src = _script(JUDGE, inbox=to_judge[0], outbox=to_callee[1], remote=list(remote),
                        check=check, entry=entry_point)  # fmt: skip
    callee_src = _script(CALLEE, inbox=to_callee[0], outbox=to_judge[1])
    results: dict[str, SandboxResult] = {}

    def run_judge() -> None:
        results["judge"] = run_python(
            judge_src, files={"context.py": context, "tests.py": tests}, timeout_s=timeout_s,
            memory_mb=memory_mb, pass_fds=(to_judge[0], to_callee[1]),
        )  # fmt: skip

    thread = threading.Thread(target=run_judge, name="gcop-judge")
    thread.start()
    callee = run_python(callee_src, files={"candidate.py": candidate}, timeout_s=timeout_s,
                        memory_mb=memory_mb, pass_fds=(to_callee[0], to_judge[1]))  # fmt: skip
    thread.join()
    tested = results["judge"]
    if not tested.passed:
        reason = f"tests {tested.status}: {tested.reason}"
        return Judgement(False, reason, tested, callee)
    if not callee.passed:
        return Judgement(False, f"candidate {callee.status}: {callee.reason}", tested, callee)
    return Judgement(True, "", tested, callee)
