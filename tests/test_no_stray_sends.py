"""Every frame leaves a process through `protocol.audit.outbox.Outbox.send`: no other module may call a send.

The scan is static (ast) over agent/, coordinator/, envserver/ and protocol/; only protocol/audit/outbox.py
may touch a socket's send methods. Two kinds of `.send(...)` call are not socket sends and are allowed:
`Outbox.send`, recognised by its keyword-only `dest=` and `endpoint=` arguments (which a ZeroMQ
socket's `send` would reject), and `self.send(...)` inside a class that defines its own `send` (that
method is scanned too, so it must itself go through the outbox), and `.send` on a parameter annotated
`Loop`: resuming an agent's loop (agent/driver.py), a generator, with the reply to its request.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("agent", "coordinator", "envserver", "protocol")
CHOKE_POINT = Path("protocol/audit/outbox.py")
# ZeroMQ socket send methods, and the standard library socket's.
SEND_METHODS = frozenset({"send", "send_multipart", "send_string", "send_json", "send_pyobj",
                          "send_serialized", "sendall", "sendto", "sendmsg"})
OUTBOX_KEYWORDS = frozenset({"dest", "endpoint"})


def _is_outbox_call(node: ast.AST, parent: ast.AST | None) -> bool:
    return isinstance(parent, ast.Call) and parent.func is node and \
        OUTBOX_KEYWORDS <= {k.arg for k in parent.keywords}


def _is_own_method_call(node: ast.Attribute, classes_with_send: list[bool]) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id == "self" and bool(classes_with_send) \
        and classes_with_send[-1]


def _loop_parameters(node: ast.AST) -> frozenset[str]:
    """The parameters of a function annotated `Loop` (an agent's loop: a generator, not a socket)."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return frozenset()
    return frozenset(a.arg for a in node.args.args if isinstance(a.annotation, ast.Name) and a.annotation.id == "Loop")


def find_sends(source: str, filename: str = "<snippet>") -> list[str]:
    """Every use of a send method in `source` that does not go through the outbox, as "file:line: .name"."""
    found: list[str] = []

    def visit(node: ast.AST, parent: ast.AST | None, classes_with_send: list[bool],
              loops: frozenset[str] = frozenset()) -> None:
        loops = _loop_parameters(node) or loops
        if isinstance(node, ast.ClassDef):
            defines_send = any(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) and b.name == "send"
                               for b in node.body)
            classes_with_send = [*classes_with_send, defines_send]
        if isinstance(node, ast.Attribute) and node.attr in SEND_METHODS:
            allowed = node.attr == "send" and (_is_outbox_call(node, parent)
                                               or _is_own_method_call(node, classes_with_send)
                                               or (isinstance(node.value, ast.Name) and node.value.id in loops))
            if not allowed:
                found.append(f"{filename}:{node.lineno}: .{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value in SEND_METHODS:
            found.append(f"{filename}:{node.lineno}: getattr(..., {node.args[1].value!r})")
        for child in ast.iter_child_nodes(node):
            visit(child, node, classes_with_send, loops)

    visit(ast.parse(source, filename), None, [])
    return found


def test_only_the_choke_point_sends() -> None:
    files = [p for d in SCANNED for p in sorted((ROOT / d).rglob("*.py"))]
    assert any(p.relative_to(ROOT) == CHOKE_POINT for p in files)
    stray = [hit for p in files if p.relative_to(ROOT) != CHOKE_POINT
             for hit in find_sends(p.read_text(), str(p.relative_to(ROOT)))]
    assert stray == [], "sends that bypass protocol.audit.outbox.Outbox:\n" + "\n".join(stray)


def test_scanner_allows_resuming_an_agent_loop_and_nothing_else() -> None:
    assert find_sends("def advance(loop: Loop, reply):\n    return loop.send(reply)\n") == []
    assert find_sends("def advance(loop: Loop, sock):\n    sock.send(b'x')\n") == ["<snippet>:2: .send"]
    assert find_sends("def advance(loop, reply):\n    return loop.send(reply)\n") == ["<snippet>:2: .send"]


def test_scanner_flags_every_send_method() -> None:
    for method in sorted(SEND_METHODS):
        assert find_sends(f"sock.{method}(b'x')\n") == [f"<snippet>:1: .{method}"], method


def test_scanner_flags_hidden_sends() -> None:
    snippet = (
        "import functools\n"
        "f = sock.send_multipart\n"                      # a bound method taken for later
        "g = functools.partial(pub.send, b'x')\n"        # passed along
        "getattr(sock, 'send_string')('x')\n"            # looked up by name
        "self.sock.send(b'x', copy=False)\n"             # a socket send on an attribute
        "class Link:\n"
        "    def push(self):\n"
        "        self.send(b'x')\n"                      # no own send() to resolve to
    )
    assert find_sends(snippet) == ["<snippet>:2: .send_multipart", "<snippet>:3: .send",
                                   "<snippet>:4: getattr(..., 'send_string')", "<snippet>:5: .send",
                                   "<snippet>:8: .send"]


def test_scanner_allows_outbox_and_own_wrappers() -> None:
    snippet = (
        "outbox.send(sock, Kind.STEP, body, dest='envserver', endpoint=ep, step=3)\n"
        "class Link:\n"
        "    def send(self, kind, body):\n"
        "        self.outbox.send(self.sock, kind, body, dest='coordinator', endpoint=self.endpoint)\n"
        "    def hello(self):\n"
        "        self.send(Kind.HELLO, {})\n"
    )
    assert find_sends(snippet) == []
