"""Unit-consistent SBML math from the model's Python-syntax expressions.

The model files give every state, parameter and named expression a unit, but the expressions contain
bare conversion constants (``1000*anastrozole_central/anastrozole_v`` turns mg/L into ng/mL). A
portable SBML file must say what those numbers mean, so this module infers the unit of every
sub-expression with pint and gives each literal the unit that makes its expression consistent:

- in a sum, a literal takes the unit of the other terms (``bmi - 23`` -> 23 kg/m^2);
- in a product whose unit differs from the declared one, the first literal of the product takes the
  correcting unit (``1000`` in the example above becomes 1000 (ng/mL)/(mg/L), which *is* 1);
- a power with a non-literal exponent (Hill functions ``x**n``) needs a dimensionless base, so a
  dimensioned base is divided by one of its units (``(x/(1 IU/L))**n``): the value is unchanged.

Where no literal can carry a correction, :class:`UnitMismatch` is raised (a units error in the model
files), never silently written. The output is SBML Level 3 infix text with units on every number.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pint

from hpgsim.errors import SpecError

PUnit = Any  # a pint unit (pint's own types are too narrow for unit algebra)


class UnitMismatch(SpecError):
    """An expression's units cannot be made consistent by giving its literals units."""


@lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry:
    """A private pint registry with international units and cell counts (kept apart from hpgsim.units)."""
    try:  # pint caches its parsed definitions on disk (saves ~0.5 s per process)
        ureg: Any = pint.UnitRegistry(cache_folder=":auto:")
    except OSError:
        ureg = pint.UnitRegistry()
    ureg.define("international_unit = [biological_activity] = IU")
    ureg.define("cells = [cell_count]")
    ureg.define("million_cells = 1e6 * cells")
    return ureg


def pint_unit(text: str) -> PUnit:
    """The pint unit for a unit string of the model files ('1', '%', '1e6/mL', 'IU/L/h', ...)."""
    s = text.strip()
    if s in ("1", "", "dimensionless"):
        return registry().dimensionless
    s = s.replace("%", "percent")
    s = re.sub(r"^1e6(?=$|\s*/)", "million_cells", s)
    try:
        q: Any = registry().Quantity(s)
    except Exception as exc:  # pint raises several unrelated types
        raise SpecError(f"SBML export: cannot read the unit {text!r} ({exc.__class__.__name__}).") from exc
    if not math.isclose(float(q.magnitude), 1.0):
        raise SpecError(f"SBML export: unit {text!r} has a numeric factor; declare a named unit instead.")
    return q.units


def same_unit(a: PUnit, b: PUnit) -> bool:
    """True when `a` and `b` are the same unit (same dimension and a conversion factor of 1)."""
    try:
        f = registry().Quantity(1.0, a).to(b).magnitude
    except pint.DimensionalityError:
        return False
    return math.isclose(float(f), 1.0, rel_tol=1e-12)


def is_dimensionless_one(u: PUnit) -> bool:
    return same_unit(u, registry().dimensionless)


# ---- expression tree --------------------------------------------------------------------------


@dataclass
class Node:
    kind: str  # num | name | neg | add | mul | pow | call | cmp | and
    value: float = 0.0
    name: str = ""
    op: str = ""
    children: list[Node] = field(default_factory=list)
    signs: list[int] = field(default_factory=list)  # add: +1/-1; mul: +1 (numerator) / -1 (denominator)
    unit: PUnit | None = None  # num only: the unit given to the literal


_CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def parse(expr: str, where: str) -> Node:
    """Parse a model expression (Python syntax) into a tree with flattened sums and products."""
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise SpecError(f"SBML export: cannot parse {where}: {expr!r}: {exc.msg}") from exc
    return _convert(tree, where)


def _convert(n: ast.AST, where: str) -> Node:
    if isinstance(n, ast.Constant) and isinstance(n.value, int | float) and not isinstance(n.value, bool):
        return Node("num", value=float(n.value))
    if isinstance(n, ast.Name):
        return Node("name", name=n.id)
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
        return Node("neg", children=[_convert(n.operand, where)])
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.UAdd):
        return _convert(n.operand, where)
    if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add | ast.Sub):
        out = Node("add")
        _flatten(n, out, 1, (ast.Add, ast.Sub), where)
        return out
    if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult | ast.Div):
        out = Node("mul")
        _flatten(n, out, 1, (ast.Mult, ast.Div), where)
        return out
    if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow):
        return Node("pow", children=[_convert(n.left, where), _convert(n.right, where)])
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and len(n.args) == 1 and not n.keywords:
        return Node("call", name=n.func.id, children=[_convert(n.args[0], where)])
    if isinstance(n, ast.Compare) and len(n.ops) == 1 and type(n.ops[0]) in _CMP:
        return Node("cmp", op=_CMP[type(n.ops[0])], children=[_convert(n.left, where), _convert(n.comparators[0], where)])
    if isinstance(n, ast.BoolOp) and isinstance(n.op, ast.And):
        return Node("and", children=[_convert(v, where) for v in n.values])
    raise SpecError(f"SBML export: unsupported syntax {type(n).__name__} in {where}")


def _flatten(n: ast.AST, out: Node, sign: int, ops: tuple[type, type], where: str) -> None:
    if isinstance(n, ast.BinOp) and isinstance(n.op, ops):
        _flatten(n.left, out, sign, ops, where)
        _flatten(n.right, out, sign if isinstance(n.op, ops[0]) else -sign, ops, where)
    else:
        out.children.append(_convert(n, where))
        out.signs.append(sign)


# ---- unit inference ---------------------------------------------------------------------------


class UnitInference:
    """Infers units bottom-up and assigns units to literals so that every expression is consistent.

    Args:
        units: unit of every name the expressions may use (states, parameters, named expressions,
            and ``time``).
    """

    def __init__(self, units: dict[str, PUnit]) -> None:
        self.units = units
        self.one = registry().dimensionless

    def balance(self, node: Node, expected: PUnit, where: str) -> None:
        """Give `node`'s literals units so that it has the unit `expected`; raise UnitMismatch if impossible."""
        got = self.infer(node, expected, where)
        if got is not None and not same_unit(got, expected):
            raise UnitMismatch(f"SBML export: {where} has unit {got:~} but is declared in {expected:~}")

    def infer(self, n: Node, expected: PUnit | None, where: str) -> PUnit | None:
        k = n.kind
        if k == "num":
            n.unit = expected if expected is not None else self.one
            return n.unit
        if k == "name":
            if n.name not in self.units:
                raise SpecError(f"SBML export: {where} uses {n.name!r}, which has no unit")
            return self.units[n.name]
        if k == "neg":
            return self.infer(n.children[0], expected, where)
        if k == "add":
            anchor = expected
            if anchor is None:
                for c in n.children:
                    if c.kind != "num":
                        anchor = self.infer(c, None, where)
                        break
            if anchor is None:
                anchor = self.one
            for c in n.children:
                got = self.infer(c, anchor, where)
                if got is None or not same_unit(got, anchor):
                    raise UnitMismatch(f"SBML export: in {where}, a term has unit {got} where {anchor:~} is expected")
            return anchor
        if k == "mul":
            product: Any = self.one
            free: list[tuple[Node, int]] = []
            for c, s in zip(n.children, n.signs, strict=True):
                if c.kind == "num":
                    c.unit = self.one
                    free.append((c, s))
                    continue
                u = self.infer(c, None, where)
                assert u is not None
                product = product * u if s > 0 else product / u
            if expected is None or same_unit(product, expected):
                return product if expected is None else expected
            corr = expected / product
            if free:
                lit, s = free[0]
                lit.unit = corr if s > 0 else 1 / corr
                return expected
            if is_dimensionless_one(corr):
                return expected
            raise UnitMismatch(
                f"SBML export: {where}: a product has unit {product:~} where {expected:~} is expected, and no number in it "
                "can carry the conversion"
            )
        if k == "pow":
            base, exponent = n.children
            if exponent.kind == "num" or (exponent.kind == "neg" and exponent.children[0].kind == "num"):
                p = exponent.value if exponent.kind == "num" else -exponent.children[0].value
                self.infer(exponent, self.one, where)
                bu = self.infer(base, None if expected is None else expected ** (1 / p), where)
                assert bu is not None
                return bu**p
            self.balance(exponent, self.one, f"exponent in {where}")
            bu = self.infer(base, None, where)
            assert bu is not None
            if not is_dimensionless_one(bu):
                # x**n with x in U: (x / (1 U))**n has the same value and a dimensionless base
                ref = Node("num", value=1.0, unit=bu)
                n.children[0] = Node("mul", children=[base, ref], signs=[1, -1])
            return self.one
        if k == "call":
            arg = n.children[0]
            if n.name in ("exp", "log"):
                self.balance(arg, self.one, f"argument of {n.name} in {where}")
                return self.one
            if n.name == "sqrt":
                u = self.infer(arg, None if expected is None else expected**2, where)
                assert u is not None
                return u**0.5
            if n.name == "abs":
                return self.infer(arg, expected, where)
            raise SpecError(f"SBML export: unsupported function {n.name!r} in {where}")
        if k == "cmp":
            left, right = n.children
            lu = self.infer(left, None, where) if left.kind != "num" else None
            ru = self.infer(right, lu, where)
            if lu is None:
                self.infer(left, ru, where)
            elif ru is None or not same_unit(lu, ru):
                raise UnitMismatch(f"SBML export: {where}: comparison of {lu:~} with {ru}")
            return None
        if k == "and":
            for c in n.children:
                self.infer(c, None, where)
            return None
        raise SpecError(f"SBML export: unknown node {k}")  # pragma: no cover


# ---- infix output -----------------------------------------------------------------------------


def to_infix(n: Node, unit_id: Any) -> str:
    """SBML L3 infix text of a tree; `unit_id(PUnit) -> str` names the unit of each literal."""
    k = n.kind
    if k == "num":
        u = n.unit if n.unit is not None else registry().dimensionless
        return f"{n.value!r} {unit_id(u)}"
    if k == "name":
        return n.name
    if k == "neg":
        return f"(-{to_infix(n.children[0], unit_id)})"
    if k == "add":
        parts = []
        for i, (c, s) in enumerate(zip(n.children, n.signs, strict=True)):
            text = to_infix(c, unit_id)
            if i == 0:
                parts.append(f"-{text}" if s < 0 else text)
            else:
                parts.append(f"{'-' if s < 0 else '+'} {text}")
        return "(" + " ".join(parts) + ")"
    if k == "mul":
        text = ""
        for i, (c, s) in enumerate(zip(n.children, n.signs, strict=True)):
            t = to_infix(c, unit_id)
            first = t if s > 0 else f"{_one(unit_id)} / {t}"
            text = first if i == 0 else f"{text} {'*' if s > 0 else '/'} {t}"
        return f"({text})"
    if k == "pow":
        return f"({to_infix(n.children[0], unit_id)}^{to_infix(n.children[1], unit_id)})"
    if k == "call":
        fname = "ln" if n.name == "log" else n.name  # Python's log is the natural log
        return f"{fname}({to_infix(n.children[0], unit_id)})"
    if k == "cmp":
        return f"({to_infix(n.children[0], unit_id)} {n.op} {to_infix(n.children[1], unit_id)})"
    if k == "and":
        return "(" + " && ".join(to_infix(c, unit_id) for c in n.children) + ")"
    raise SpecError(f"SBML export: unknown node {k}")  # pragma: no cover


def _one(unit_id: Any) -> str:
    return f"1.0 {unit_id(registry().dimensionless)}"
