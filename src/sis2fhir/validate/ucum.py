"""Whether a string is a UCUM code by the grammar of UCUM section 2 (case-sensitive form), over the atoms and
prefixes of UCUM 2.2 (ucum_atoms.py). No conversion, no dimension check: a FHIR Quantity in system
http://unitsofmeasure.org must carry a code a UCUM library can parse; whether it matches `unit` is not checked.

    main-term   := "/" term | term
    term        := component (("." | "/") component)*
    component   := annotatable [annotation] | annotation | factor | "(" term ")"
    annotatable := simple-unit [exponent]          exponent := ["+" | "-"] digits
    simple-unit := atom | prefix metric-atom        annotation := "{" ASCII 33-126 except curly braces "}"

Real exports carry 'days', 'percent', 'D' or 'hrs' where UCUM has d, %, d and h: each is rejected here.
"""

from __future__ import annotations

from functools import lru_cache

from sis2fhir.validate.ucum_atoms import METRIC_ATOMS, OTHER_ATOMS, PREFIXES

# characters that end a unit symbol outside square brackets: operators, parentheses, an annotation, an exponent
_ENDS_SYMBOL = frozenset("./(){}+-0123456789")


class _NotUcum(Exception):
    """The code breaks the grammar; the message says where, naming only the part of the code at fault."""


def _simple_unit(symbol: str) -> bool:
    if symbol in METRIC_ATOMS or symbol in OTHER_ATOMS:
        return True
    return any(symbol[: len(p)] == p and symbol[len(p) :] in METRIC_ATOMS for p in PREFIXES if len(symbol) > len(p))


class _Parser:
    __slots__ = ("code", "pos")

    def __init__(self, code: str) -> None:
        self.code = code
        self.pos = 0

    def _peek(self) -> str:
        return self.code[self.pos] if self.pos < len(self.code) else ""

    def main_term(self) -> None:
        if self._peek() == "/":
            self.pos += 1
        self._term()
        if self.pos != len(self.code):
            raise _NotUcum(f"unexpected {self._peek()!r} at position {self.pos + 1}")

    def _term(self) -> None:
        self._component()
        while self._peek() in (".", "/"):
            self.pos += 1
            self._component()

    def _component(self) -> None:
        char = self._peek()
        if not char:
            raise _NotUcum("a unit is missing at the end")
        if char == "(":
            self.pos += 1
            self._term()
            if self._peek() != ")":
                raise _NotUcum("a '(' is not closed")
            self.pos += 1
            return
        if char == "{":
            self._annotation()
            return
        if char.isdigit():
            start = self.pos
            while self._peek().isdigit():
                self.pos += 1
            if self._peek() in ("*", "^") and self.code[start : self.pos] == "10":
                self.pos += 1  # the atoms 10* and 10^, for powers of ten: 10*3/uL
                self._exponent()
                self._annotation_if_any()
            return  # a factor: 1, 100, 24
        symbol = self._symbol()
        if not _simple_unit(symbol):
            raise _NotUcum(f"{symbol!r} is not a UCUM unit" if len(symbol) <= 24 else "an unknown unit")
        self._exponent()
        self._annotation_if_any()

    def _symbol(self) -> str:
        start = self.pos
        code = self.code
        while self.pos < len(code) and code[self.pos] not in _ENDS_SYMBOL:
            if code[self.pos] == "[":
                end = code.find("]", self.pos)
                if end < 0:
                    raise _NotUcum("a '[' is not closed")
                self.pos = end + 1
            else:
                self.pos += 1
        if self.pos == start:
            raise _NotUcum(f"a unit is missing at position {start + 1}")
        return code[start : self.pos]

    def _exponent(self) -> None:
        if self._peek() in ("+", "-"):
            self.pos += 1
            if not self._peek().isdigit():
                raise _NotUcum("a sign without an exponent")
        while self._peek().isdigit():
            self.pos += 1

    def _annotation_if_any(self) -> None:
        if self._peek() == "{":
            self._annotation()

    def _annotation(self) -> None:
        end = self.code.find("}", self.pos)
        if end < 0:
            raise _NotUcum("a '{' is not closed")
        if "{" in self.code[self.pos + 1 : end]:
            raise _NotUcum("an annotation holds a '{'")
        self.pos = end + 1


@lru_cache(maxsize=4096)
def ucum_problem(code: str) -> str | None:
    """None when `code` is a valid UCUM expression (case-sensitive), else why not."""
    if not code:
        return "a UCUM code must not be empty"
    if any(not 33 <= ord(c) <= 126 for c in code):
        return "a UCUM code holds only printable ASCII, no spaces"
    try:
        _Parser(code).main_term()
    except _NotUcum as error:
        return str(error)
    return None
