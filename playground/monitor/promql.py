"""A subset of PromQL: parse an expression once, evaluate it against the latest samples.

Every expression this module accepts is valid PromQL and means the same in Prometheus
(the rule files load in a real Prometheus unchanged). The subset:

* numbers (``1``, ``0.5``, ``1e3``, ``Inf``, ``NaN``) and strings (as function arguments);
* instant vector selectors with label matchers ``=``, ``!=``, ``=~``, ``!~`` (regexes
  fully anchored, as in Prometheus): ``up{job="marathon"}``, ``{__name__="up"}``;
* range vector selectors ``metric{...}[5m]`` as arguments of the ``*_over_time``
  functions, ``increase``, ``rate``, ``delta`` and ``changes``;
* arithmetic ``+ - * / % ^``, comparisons ``== != > < >= <=`` (with ``bool``) and the set
  operators ``and``, ``or``, ``unless``, between scalars and vectors, with ``on(...)`` /
  ``ignoring(...)`` and ``group_left(...)`` / ``group_right(...)`` vector matching,
  Prometheus's operator precedence and its rules for which labels a result keeps;
* aggregations ``sum``, ``min``, ``max``, ``avg``, ``count``, ``group`` with ``by (...)``
  or ``without (...)`` (before or after the argument);
* functions ``absent``, ``abs``, ``clamp_min``, ``clamp_max``, ``scalar``, ``vector``,
  ``time``, ``increase``, ``rate``, ``delta``, ``changes``, ``max_over_time``,
  ``min_over_time``, ``avg_over_time``, ``sum_over_time``, ``count_over_time``,
  ``last_over_time``.

What differs from Prometheus: ``increase``/``rate``/``delta`` do not extrapolate to the
window's edges (they are the change between the first and the last sample in the
window, counter resets handled), and range windows are real-cluster durations that the
caller converts to wall time (the cluster's time scale). Not supported (a parse error
says so): ``offset``, ``@``, subqueries, ``topk``/``quantile``/``count_values``/
``stddev``, and the other functions.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from playground.errors import PlaygroundError


class PromQLError(PlaygroundError):
    """An expression is not in the supported subset, or evaluating it failed."""


# ---- values -----------------------------------------------------------------------------
Labels = dict[str, str]
LabelKey = tuple[tuple[str, str], ...]
NAME = "__name__"


def key_of(labels: Mapping[str, str]) -> LabelKey:
    """A hashable, order-independent form of a label set."""
    return tuple(sorted(labels.items()))


@dataclass
class Sample:
    """One element of an instant vector: a label set and its value."""

    labels: Labels
    value: float


@dataclass
class Series:
    """One element of a range vector: a label set and its points ``(wall time, value)``."""

    labels: Labels
    points: list[tuple[float, float]]


Value: TypeAlias = float | str | list[Sample] | list[Series]


# ---- durations --------------------------------------------------------------------------
_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (``30s``, ``5m``, ``1h30m``, ``250ms``)."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise PromQLError(
            f"not a duration: {text!r} (write e.g. 30s, 5m, 1h30m; units ms s m h d w y)"
        )
    units = ("y", "w", "d", "h", "m", "s", "ms")
    return sum(int(g) * _DURATION_UNITS[u] for g, u in zip(m.groups(), units, strict=True) if g)


def format_duration(seconds: float) -> str:
    """A duration as Prometheus writes it (``1m30s``; ``0s``)."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out


# ---- lexer ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # num str ident op dur eof
    text: str
    pos: int


_OPS = ("==", "!=", ">=", "<=", "=~", "!~", "+", "-", "*", "/", "%", "^", ">", "<", "=")
_PUNCT = "(){}[],"
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DUR_TOKEN = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "#":  # a comment runs to the end of the line
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c in "\"'`":
            j = i + 1
            buf = []
            while j < n and text[j] != c:
                if text[j] == "\\" and c != "`" and j + 1 < n:
                    esc = text[j + 1]
                    buf.append({"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}.get(esc, esc))
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                raise PromQLError(f"unterminated string at position {i}")
            out.append(Token("str", "".join(buf), i))
            i = j + 1
            continue
        if out and out[-1].text == "[" and c.isdigit():
            m = _DUR_TOKEN.match(text, i)
            if m is None:
                raise PromQLError(f"expected a duration such as 5m at position {i}")
            out.append(Token("dur", m.group(0), i))
            i = m.end()
            continue
        if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUMBER.match(text, i)
            assert m is not None
            out.append(Token("num", m.group(0), i))
            i = m.end()
            continue
        m = _IDENT.match(text, i)
        if m is not None:
            out.append(Token("ident", m.group(0), i))
            i = m.end()
            continue
        if c in _PUNCT:
            out.append(Token("op", c, i))
            i += 1
            continue
        for op in _OPS:
            if text.startswith(op, i):
                out.append(Token("op", op, i))
                i += len(op)
                break
        else:
            raise PromQLError(f"unexpected character {c!r} at position {i}")
    out.append(Token("eof", "", n))
    return out


# ---- syntax tree ------------------------------------------------------------------------
@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = re.fullmatch(self.value, v) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class NumberLit:
    value: float


@dataclass(frozen=True)
class StringLit:
    value: str


@dataclass(frozen=True)
class VectorSelector:
    matchers: tuple[Matcher, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class MatrixSelector:
    selector: VectorSelector
    range_s: float  # real-cluster seconds


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: Any
    grouping: tuple[str, ...]
    without: bool


@dataclass(frozen=True)
class Matching:
    on: bool
    labels: tuple[str, ...]
    card: str = "one-to-one"  # or many-to-one (group_left), one-to-many (group_right)
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: Any
    rhs: Any
    return_bool: bool = False
    matching: Matching | None = None


@dataclass(frozen=True)
class Unary:
    op: str
    expr: Any


Expr: TypeAlias = (
    NumberLit | StringLit | VectorSelector | MatrixSelector | Call | Aggregate | Binary | Unary
)

AGGREGATIONS = ("sum", "min", "max", "avg", "count", "group")
UNSUPPORTED_AGGREGATIONS = ("topk", "bottomk", "quantile", "count_values", "stddev", "stdvar")
# name -> (argument types, return type); "v" instant vector, "m" range vector, "s" scalar
FUNCTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "absent": (("v",), "v"),
    "abs": (("v",), "v"),
    "clamp_min": (("v", "s"), "v"),
    "clamp_max": (("v", "s"), "v"),
    "scalar": (("v",), "s"),
    "vector": (("s",), "v"),
    "time": ((), "s"),
    "increase": (("m",), "v"),
    "rate": (("m",), "v"),
    "delta": (("m",), "v"),
    "changes": (("m",), "v"),
    "max_over_time": (("m",), "v"),
    "min_over_time": (("m",), "v"),
    "avg_over_time": (("m",), "v"),
    "sum_over_time": (("m",), "v"),
    "count_over_time": (("m",), "v"),
    "last_over_time": (("m",), "v"),
}
COMPARISONS = ("==", "!=", ">", "<", ">=", "<=")
SET_OPS = ("and", "or", "unless")
_PRECEDENCE = [("or",), ("and", "unless"), COMPARISONS, ("+", "-"), ("*", "/", "%")]
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", *SET_OPS}


def type_of(node: Expr) -> str:
    """``scalar``, ``vector``, ``matrix`` or ``string``."""
    if isinstance(node, NumberLit):
        return "scalar"
    if isinstance(node, StringLit):
        return "string"
    if isinstance(node, VectorSelector | Aggregate):
        return "vector"
    if isinstance(node, MatrixSelector):
        return "matrix"
    if isinstance(node, Call):
        return {"v": "vector", "s": "scalar"}[FUNCTIONS[node.func][1]]
    if isinstance(node, Unary):
        return type_of(node.expr)
    if isinstance(node, Binary):
        if type_of(node.lhs) == "scalar" and type_of(node.rhs) == "scalar":
            return "scalar"
        return "vector"
    raise AssertionError(node)


# ---- parser -----------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, msg: str, tok: Token | None = None) -> PromQLError:
        t = tok or self.tok
        return PromQLError(f"{msg} at position {t.pos} of {self.text!r}")

    def expect(self, text: str) -> Token:
        if self.tok.text != text or self.tok.kind not in ("op", "ident"):
            found = repr(self.tok.text) if self.tok.kind != "eof" else "the end"
            raise self.error(f"expected {text!r}, found {found}")
        return self.next()

    def at_op(self, *ops: str) -> bool:
        t = self.tok
        if t.kind == "op" and t.text in ops:
            return True
        return t.kind == "ident" and t.text in ops and t.text in SET_OPS

    # grammar
    def parse(self) -> Expr:
        if self.tok.kind == "eof":
            raise self.error("empty expression")
        node = self.binary(0)
        if self.tok.kind != "eof":
            raise self.error(f"unexpected {self.tok.text!r}")
        return node

    def binary(self, level: int) -> Expr:
        if level == len(_PRECEDENCE):
            return self.unary()
        lhs = self.binary(level + 1)
        while self.at_op(*_PRECEDENCE[level]):
            op_tok = self.next()
            op = op_tok.text
            return_bool = False
            if self.tok.kind == "ident" and self.tok.text == "bool":
                if op not in COMPARISONS:
                    raise self.error("bool modifier can only be used on comparison operators")
                self.next()
                return_bool = True
            matching = self.matching(op)
            rhs = self.binary(level + 1)
            lhs = self.check_binary(Binary(op, lhs, rhs, return_bool, matching), op_tok)
        return lhs

    def matching(self, op: str) -> Matching | None:
        if not (self.tok.kind == "ident" and self.tok.text in ("on", "ignoring")):
            return None
        on = self.next().text == "on"
        labels = self.label_list()
        card = "one-to-one"
        include: tuple[str, ...] = ()
        if self.tok.kind == "ident" and self.tok.text in ("group_left", "group_right"):
            if op in SET_OPS:
                raise self.error(f"no grouping allowed for {op!r} operation")
            card = "many-to-one" if self.next().text == "group_left" else "one-to-many"
            if self.tok.text == "(":
                include = self.label_list()
        if op in SET_OPS:
            card = "many-to-many"
        return Matching(on, labels, card, include)

    def check_binary(self, node: Binary, tok: Token) -> Binary:
        lt, rt = type_of(node.lhs), type_of(node.rhs)
        for t in (lt, rt):
            if t not in ("scalar", "vector"):
                raise self.error(
                    f"binary expression must contain only scalar and instant vector types, not {t}",
                    tok,
                )
        if node.op in SET_OPS and (lt != "vector" or rt != "vector"):
            raise self.error(
                f"set operator {node.op!r} not allowed in binary scalar expression", tok
            )
        if node.op in COMPARISONS and lt == rt == "scalar" and not node.return_bool:
            raise self.error("comparisons between scalars must use BOOL modifier", tok)
        if node.matching is not None and (lt != "vector" or rt != "vector"):
            raise self.error("vector matching only allowed between instant vectors", tok)
        return node

    def unary(self) -> Expr:
        if self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op = self.next().text
            inner = self.unary()
            if type_of(inner) not in ("scalar", "vector"):
                raise self.error(
                    "unary expression only allowed on expressions of type scalar or instant vector"
                )
            if isinstance(inner, NumberLit):
                return NumberLit(-inner.value if op == "-" else inner.value)
            return Unary(op, inner) if op == "-" else inner
        return self.power()

    def power(self) -> Expr:
        base = self.postfix()
        if self.tok.kind == "op" and self.tok.text == "^":
            tok = self.next()
            matching = self.matching("^")
            exp = self.unary()  # right-associative
            return self.check_binary(Binary("^", base, exp, False, matching), tok)
        return base

    def postfix(self) -> Expr:
        node = self.primary()
        if self.tok.kind == "op" and self.tok.text == "[":
            if not isinstance(node, VectorSelector):
                raise self.error(
                    "ranges only allowed for vector selectors (subqueries are not supported)"
                )
            self.next()
            if self.tok.kind != "dur":
                raise self.error("expected a duration such as 5m")
            seconds = parse_duration(self.next().text)
            if self.tok.text.startswith(":"):
                raise self.error("subqueries are not supported")
            self.expect("]")
            node = MatrixSelector(node, seconds)
        if self.tok.kind == "ident" and self.tok.text == "offset":
            raise self.error("the offset modifier is not supported")
        if self.tok.kind == "op" and self.tok.text == "@":
            raise self.error("the @ modifier is not supported")
        return node

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == "num":
            self.next()
            return NumberLit(float(t.text))
        if t.kind == "str":
            self.next()
            return StringLit(t.text)
        if t.kind == "op" and t.text == "(":
            self.next()
            inner = self.binary(0)
            self.expect(")")
            return inner
        if t.kind == "op" and t.text == "{":
            return self.selector(None)
        if t.kind == "ident":
            low = t.text.lower()
            if low in ("inf", "nan"):
                self.next()
                return NumberLit(math.inf if low == "inf" else math.nan)
            if t.text in AGGREGATIONS:
                return self.aggregate()
            if t.text in UNSUPPORTED_AGGREGATIONS:
                raise self.error(f"the aggregation {t.text!r} is not supported")
            if self.peek().kind == "op" and self.peek().text == "(":
                return self.call()
            if t.text in _KEYWORDS:
                raise self.error(f"unexpected keyword {t.text!r}")
            self.next()
            return self.selector(t.text)
        found = repr(t.text) if t.kind != "eof" else "the end"
        raise self.error(f"unexpected {found}")

    def label_list(self) -> tuple[str, ...]:
        self.expect("(")
        out: list[str] = []
        while self.tok.text != ")":
            t = self.next()
            if t.kind != "ident" or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", t.text):
                raise self.error(f"expected a label name, found {t.text!r}", t)
            out.append(t.text)
            if self.tok.text == ",":
                self.next()
            elif self.tok.text != ")":
                raise self.error("expected ',' or ')' in a label list")
        self.next()
        return tuple(out)

    def selector(self, name: str | None) -> VectorSelector:
        start = self.tok
        matchers: list[Matcher] = []
        if name is not None:
            matchers.append(Matcher(NAME, "=", name))
        if self.tok.kind == "op" and self.tok.text == "{":
            self.next()
            while self.tok.text != "}":
                lt = self.next()
                if lt.kind != "ident" or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", lt.text):
                    raise self.error(f"expected a label name, found {lt.text!r}", lt)
                op = self.next()
                if op.kind != "op" or op.text not in ("=", "!=", "=~", "!~"):
                    raise self.error(f"expected a label matching operator, found {op.text!r}", op)
                val = self.next()
                if val.kind != "str":
                    raise self.error("expected a quoted label value", val)
                if op.text in ("=~", "!~"):
                    try:
                        re.compile(val.text)
                    except re.error as exc:
                        raise self.error(
                            f"invalid regular expression {val.text!r}: {exc}", val
                        ) from None
                if lt.text == NAME and name is not None:
                    raise self.error("metric name must not be set twice", lt)
                matchers.append(Matcher(lt.text, op.text, val.text))
                if self.tok.text == ",":
                    self.next()
                elif self.tok.text != "}":
                    raise self.error("expected ',' or '}' in a selector")
            self.next()
        if not any(not m.matches({}) for m in matchers):
            raise self.error("vector selector must contain at least one non-empty matcher", start)
        return VectorSelector(tuple(matchers))

    def aggregate(self) -> Aggregate:
        op = self.next().text
        grouping: tuple[str, ...] = ()
        without = False
        had = False
        if self.tok.kind == "ident" and self.tok.text in ("by", "without"):
            without = self.next().text == "without"
            grouping = self.label_list()
            had = True
        self.expect("(")
        expr = self.binary(0)
        if self.tok.text == ",":
            raise self.error(f"{op} takes one argument")
        self.expect(")")
        if self.tok.kind == "ident" and self.tok.text in ("by", "without"):
            if had:
                raise self.error("grouping given twice")
            without = self.next().text == "without"
            grouping = self.label_list()
        if type_of(expr) != "vector":
            raise self.error(f"expected instant vector in aggregation {op}, got {type_of(expr)}")
        return Aggregate(op, expr, grouping, without)

    def call(self) -> Call:
        name_tok = self.next()
        name = name_tok.text
        if name not in FUNCTIONS:
            raise self.error(
                f"the function {name!r} is not supported (or does not exist)", name_tok
            )
        self.expect("(")
        args: list[Expr] = []
        while self.tok.text != ")":
            args.append(self.binary(0))
            if self.tok.text == ",":
                self.next()
            elif self.tok.text != ")":
                raise self.error("expected ',' or ')' in a function call")
        self.next()
        want, _ = FUNCTIONS[name]
        if len(args) != len(want):
            raise self.error(
                f"expected {len(want)} argument(s) in call to {name!r}, got {len(args)}", name_tok
            )
        names = {"v": "vector", "m": "matrix", "s": "scalar"}
        for a, w in zip(args, want, strict=True):
            if type_of(a) != names[w]:
                raise self.error(
                    f"expected type {'range vector' if w == 'm' else 'instant vector' if w == 'v' else 'scalar'} "
                    f"in call to function {name!r}, got {type_of(a)}",
                    name_tok,
                )
        return Call(name, tuple(args))


def parse(text: str) -> Expr:
    """Parse ``text``; raise :class:`PromQLError` naming the position when it is not valid."""
    if not isinstance(text, str):
        raise PromQLError(f"an expression is a string, not {type(text).__name__}")
    return _Parser(text).parse()


def selectors(node: Any) -> list[VectorSelector]:
    """Every vector selector of an expression (for looking up what it reads)."""
    out: list[VectorSelector] = []
    if isinstance(node, VectorSelector):
        out.append(node)
    elif isinstance(node, MatrixSelector):
        out.append(node.selector)
    elif isinstance(node, Call):
        for a in node.args:
            out.extend(selectors(a))
    elif isinstance(node, Aggregate | Unary):
        out.extend(selectors(node.expr))
    elif isinstance(node, Binary):
        out.extend(selectors(node.lhs) + selectors(node.rhs))
    return out


def range_selectors(node: Any) -> list[VectorSelector]:
    """The selectors of an expression that are read as range vectors."""
    if isinstance(node, MatrixSelector):
        return [node.selector]
    if isinstance(node, Call):
        return [s for a in node.args for s in range_selectors(a)]
    if isinstance(node, Aggregate | Unary):
        return range_selectors(node.expr)
    if isinstance(node, Binary):
        return range_selectors(node.lhs) + range_selectors(node.rhs)
    return []


def max_range(node: Any) -> float:
    """The longest range window (real-cluster seconds) the expression reads; 0 if none."""
    if isinstance(node, MatrixSelector):
        return node.range_s
    if isinstance(node, Call):
        return max((max_range(a) for a in node.args), default=0.0)
    if isinstance(node, Aggregate | Unary):
        return max_range(node.expr)
    if isinstance(node, Binary):
        return max(max_range(node.lhs), max_range(node.rhs))
    return 0.0


# ---- evaluation -------------------------------------------------------------------------
@dataclass
class Context:
    """What an evaluation reads.

    Attributes:
        samples: the current instant vector of every series.
        history: points ``(wall time, value)`` of series matching a selector within the
            last ``wall seconds`` (for range vectors).
        now: wall-clock seconds of the evaluation.
        to_wall: converts a real-cluster duration (a range window) to wall seconds.
    """

    samples: Sequence[Sample]
    history: Callable[[VectorSelector, float], list[Series]] = field(default=lambda _sel, _w: [])
    now: float = 0.0
    to_wall: Callable[[float], float] = field(default=lambda s: s)


def evaluate(node: Expr, ctx: Context) -> Value:
    """Evaluate a parsed expression at ``ctx.now``."""
    return _Eval(ctx).eval(node)


def query(text: str, ctx: Context) -> Value:
    """Parse and evaluate ``text``."""
    return evaluate(parse(text), ctx)


def _without_name(labels: Mapping[str, str]) -> Labels:
    return {k: v for k, v in labels.items() if k != NAME}


def _arith(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
            return a / b
        if op == "%":
            return math.fmod(a, b) if b != 0 else math.nan
        if op == "^":
            return float(a**b)
    except (OverflowError, ValueError, ZeroDivisionError):
        return math.nan
    raise AssertionError(op)


def _compare(op: str, a: float, b: float) -> bool:
    return {
        "==": a == b,
        "!=": a != b,
        ">": a > b,
        "<": a < b,
        ">=": a >= b,
        "<=": a <= b,
    }[op]


class _Eval:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def eval(self, node: Any) -> Value:
        if isinstance(node, NumberLit):
            return node.value
        if isinstance(node, StringLit):
            return node.value
        if isinstance(node, VectorSelector):
            return [
                Sample(dict(s.labels), s.value) for s in self.ctx.samples if node.matches(s.labels)
            ]
        if isinstance(node, MatrixSelector):
            return self.ctx.history(node.selector, self.ctx.to_wall(node.range_s))
        if isinstance(node, Unary):
            v = self.eval(node.expr)
            if isinstance(v, float):
                return -v
            return [Sample(_without_name(s.labels), -s.value) for s in self._vec(v)]
        if isinstance(node, Aggregate):
            return self.aggregate(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Binary):
            return self.binary(node)
        raise AssertionError(node)

    @staticmethod
    def _vec(v: Value) -> list[Sample]:
        assert isinstance(v, list)
        return v  # type: ignore[return-value]

    # -- aggregation
    def aggregate(self, node: Aggregate) -> list[Sample]:
        groups: dict[LabelKey, list[Sample]] = {}
        out_labels: dict[LabelKey, Labels] = {}
        for s in self._vec(self.eval(node.expr)):
            if node.without:
                lab = {k: v for k, v in s.labels.items() if k not in node.grouping and k != NAME}
            else:
                lab = {k: v for k, v in s.labels.items() if k in node.grouping}
            k = key_of(lab)
            groups.setdefault(k, []).append(s)
            out_labels[k] = lab
        out = []
        for k, items in groups.items():
            vals = [s.value for s in items]
            if node.op == "sum":
                r = math.fsum(vals)
            elif node.op == "min":
                r = min(vals)
            elif node.op == "max":
                r = max(vals)
            elif node.op == "avg":
                r = math.fsum(vals) / len(vals)
            elif node.op == "count":
                r = float(len(vals))
            else:  # group
                r = 1.0
            out.append(Sample(out_labels[k], r))
        return out

    # -- functions
    def call(self, node: Call) -> Value:
        f = node.func
        args = node.args
        if f == "time":
            return float(self.ctx.now)
        if f == "vector":
            v = self.eval(args[0])
            assert isinstance(v, float)
            return [Sample({}, v)]
        if f == "scalar":
            vec = self._vec(self.eval(args[0]))
            return vec[0].value if len(vec) == 1 else math.nan
        if f == "absent":
            vec = self._vec(self.eval(args[0]))
            if vec:
                return []
            labels: Labels = {}
            if isinstance(args[0], VectorSelector):
                for m in args[0].matchers:
                    if m.op == "=" and m.name != NAME:
                        labels[m.name] = m.value
            return [Sample(labels, 1.0)]
        if f == "abs":
            return [
                Sample(_without_name(s.labels), abs(s.value)) for s in self._vec(self.eval(args[0]))
            ]
        if f in ("clamp_min", "clamp_max"):
            bound = self.eval(args[1])
            assert isinstance(bound, float)
            pick = max if f == "clamp_min" else min
            return [
                Sample(_without_name(s.labels), pick(s.value, bound))
                for s in self._vec(self.eval(args[0]))
            ]
        # range-vector functions
        matrix = self.eval(args[0])
        assert isinstance(matrix, list)
        out: list[Sample] = []
        window = args[0].range_s
        for series in matrix:
            assert isinstance(series, Series)
            pts = sorted(series.points)
            if not pts:
                continue
            vals = [v for _, v in pts]
            r: float | None
            if f in ("increase", "rate"):
                if len(vals) < 2:
                    continue
                inc = 0.0
                for a, b in itertools.pairwise(vals):
                    inc += b - a if b >= a else b
                r = inc if f == "increase" else inc / window if window > 0 else math.nan
            elif f == "delta":
                if len(vals) < 2:
                    continue
                r = vals[-1] - vals[0]
            elif f == "changes":
                r = float(sum(1 for a, b in itertools.pairwise(vals) if a != b))
            elif f == "max_over_time":
                r = max(vals)
            elif f == "min_over_time":
                r = min(vals)
            elif f == "avg_over_time":
                r = math.fsum(vals) / len(vals)
            elif f == "sum_over_time":
                r = math.fsum(vals)
            elif f == "count_over_time":
                r = float(len(vals))
            else:  # last_over_time keeps the name-less labels as Prometheus does
                r = vals[-1]
            out.append(Sample(_without_name(series.labels), r))
        return out

    # -- binary operators
    def binary(self, node: Binary) -> Value:
        lhs = self.eval(node.lhs)
        rhs = self.eval(node.rhs)
        op = node.op
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in COMPARISONS:
                return 1.0 if _compare(op, lhs, rhs) else 0.0
            return _arith(op, lhs, rhs)
        if isinstance(lhs, float) or isinstance(rhs, float):
            return self.vector_scalar(node, lhs, rhs)
        lv, rv = self._vec(lhs), self._vec(rhs)
        if op in SET_OPS:
            return self.set_op(node, lv, rv)
        return self.vector_vector(node, lv, rv)

    def vector_scalar(self, node: Binary, lhs: Value, rhs: Value) -> list[Sample]:
        swap = isinstance(lhs, float)
        vec = self._vec(rhs if swap else lhs)
        scalar = lhs if swap else rhs
        assert isinstance(scalar, float)
        out = []
        for s in vec:
            a, b = (scalar, s.value) if swap else (s.value, scalar)
            if node.op in COMPARISONS:
                hit = _compare(node.op, a, b)
                if node.return_bool:
                    out.append(Sample(_without_name(s.labels), 1.0 if hit else 0.0))
                elif hit:
                    out.append(Sample(dict(s.labels), s.value))
            else:
                out.append(Sample(_without_name(s.labels), _arith(node.op, a, b)))
        return out

    @staticmethod
    def signature(labels: Mapping[str, str], matching: Matching | None) -> LabelKey:
        if matching is None:
            return key_of(_without_name(labels))
        if matching.on:
            return key_of({k: labels.get(k, "") for k in matching.labels})
        return key_of({k: v for k, v in labels.items() if k not in matching.labels and k != NAME})

    def set_op(self, node: Binary, lv: list[Sample], rv: list[Sample]) -> list[Sample]:
        sig = self.signature
        m = node.matching
        right = {sig(s.labels, m) for s in rv}
        if node.op == "and":
            return [s for s in lv if sig(s.labels, m) in right]
        if node.op == "unless":
            return [s for s in lv if sig(s.labels, m) not in right]
        left = {sig(s.labels, m) for s in lv}
        return list(lv) + [s for s in rv if sig(s.labels, m) not in left]

    def vector_vector(self, node: Binary, lv: list[Sample], rv: list[Sample]) -> list[Sample]:
        m = node.matching or Matching(False, ())
        sig = self.signature
        many, one = (rv, lv) if m.card == "one-to-many" else (lv, rv)
        one_by_sig: dict[LabelKey, Sample] = {}
        for s in one:
            k = sig(s.labels, m)
            if k in one_by_sig:
                side = "left" if m.card == "one-to-many" else "right"
                raise PromQLError(
                    f"found duplicate series for the match group {dict(k)} on the {side} "
                    "hand-side of the operation; many-to-many matching not allowed: "
                    "matching labels must be unique on one side"
                )
            one_by_sig[k] = s
        if m.card == "one-to-one":
            seen_left: set[LabelKey] = set()
            for s in many:
                k = sig(s.labels, m)
                if k in one_by_sig:
                    if k in seen_left:
                        raise PromQLError(
                            "multiple matches for labels: many-to-one matching must be "
                            "explicit (group_left/group_right)"
                        )
                    seen_left.add(k)
        comparison = node.op in COMPARISONS
        out: list[Sample] = []
        seen: set[LabelKey] = set()
        for s in many:
            other = one_by_sig.get(sig(s.labels, m))
            if other is None:
                continue
            left, right = (other, s) if m.card == "one-to-many" else (s, other)
            if comparison:
                hit = _compare(node.op, left.value, right.value)
                if not hit and not node.return_bool:
                    continue
                value = (1.0 if hit else 0.0) if node.return_bool else left.value
            else:
                value = _arith(node.op, left.value, right.value)
            labels = self.result_labels(node, m, s.labels, other.labels)
            k = key_of(labels)
            if k in seen:
                raise PromQLError(
                    "vector cannot contain metrics with the same labelset "
                    f"{dict(k)} (add on(...)/ignoring(...) or aggregate first)"
                )
            seen.add(k)
            out.append(Sample(labels, value))
        return out

    @staticmethod
    def result_labels(
        node: Binary, m: Matching, labels: Mapping[str, str], other: Mapping[str, str]
    ) -> Labels:
        out = dict(labels)
        if node.op not in COMPARISONS or node.return_bool:
            out.pop(NAME, None)
        if m.card == "one-to-one":
            if m.on:
                out = {k: v for k, v in out.items() if k in m.labels}
            else:
                out = {k: v for k, v in out.items() if k not in m.labels}
        else:
            for k in m.include:
                if other.get(k, ""):
                    out[k] = other[k]
                else:
                    out.pop(k, None)
        return out
