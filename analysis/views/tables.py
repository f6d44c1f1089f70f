"""Tables: typed columns rendered as Markdown (terminal and report), CSV (raw numbers) and LaTeX (booktabs).

A column says what its numbers are (unit in the header, decimals, scale), so every cell of a column is printed
the same way: fixed decimals, thousands separators, right-aligned, never scientific notation. CSV cells are plain
numbers in the header's unit; a pooled value (:class:`analysis.stats.intervals.Estimate`) is two CSV columns, the mean
and the 95 % CI half-width.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from analysis.stats.intervals import Estimate

TEXT, INT, NUM, EST, FLAG = "text", "int", "num", "estimate", "flag"
MISSING = "–"


@dataclass
class Column:
    name: str  # header, with its unit: "step median (ms)"
    kind: str = TEXT
    decimals: int = 2
    scale: float = 1.0  # stored value x scale = the number shown (e.g. 1e3 for seconds shown as ms)
    missing: str = MISSING  # shown for a missing value (None, NaN, an estimate of no runs)
    show_n: bool = False  # estimates: append "(n=...)" (cells of one column pooled over different counts)

    @property
    def numeric(self) -> bool:
        return self.kind in (INT, NUM, EST)


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


@dataclass
class Table:
    name: str  # file stem
    title: str
    columns: list[Column]
    rows: list[list]
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rows

    # ---- one cell --------------------------------------------------------------------------------------
    def _number(self, col: Column, x) -> str:
        x = x * col.scale
        return f"{x:,.0f}" if col.kind == INT else f"{x:,.{col.decimals}f}"

    def cell(self, col: Column, value) -> str:
        """The text a reader sees for ``value`` in ``col``."""
        if col.kind == FLAG:
            return "yes" if value else "no"
        if col.kind == TEXT:
            return MISSING if value is None else str(value)
        if isinstance(value, Estimate):
            if value.n == 0:
                return col.missing
            text = self._number(col, value.mean)
            text = text if value.n < 2 else f"{text} ± {self._number(col, value.half)}"
            return f"{text} (n={value.n})" if col.show_n else text
        return self._number(col, value) if _finite(value) else col.missing

    def _raw(self, col: Column, value) -> list:
        """CSV cells: plain numbers in the header's unit (no separators), empty where missing."""
        if col.kind == FLAG:
            return [int(bool(value))]
        if col.kind == TEXT:
            return ["" if value is None else str(value)]
        if col.kind == EST:
            est = value if isinstance(value, Estimate) else Estimate(math.nan, math.nan, 0)
            cells = [self._plain(col, est.mean), self._plain(col, est.half)]
            return cells + [est.n] if col.show_n else cells
        return [self._plain(col, value)]

    @staticmethod
    def _plain(col: Column, x) -> str:
        if not _finite(x):
            return ""
        x = float(x) * col.scale
        return str(int(round(x))) if col.kind == INT else f"{x:.{max(col.decimals, 6)}g}"

    # ---- renderings ------------------------------------------------------------------------------------
    def markdown(self) -> str:
        align = ["---:" if c.numeric else ":---" for c in self.columns]
        lines = [f"### {self.title}", "", "| " + " | ".join(c.name for c in self.columns) + " |"]
        lines.append("|" + "|".join(align) + "|")
        lines += ["| " + " | ".join(self.cell(c, v) for c, v in zip(self.columns, row)) + " |" for row in self.rows]
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        header = []
        for c in self.columns:
            header += [c.name, f"{c.name} ±95% CI"] if c.kind == EST else [c.name]
            header += [f"{c.name} n"] if c.kind == EST and c.show_n else []
        writer.writerow(header)
        for row in self.rows:
            writer.writerow([x for c, v in zip(self.columns, row) for x in self._raw(c, v)])
        return buf.getvalue()

    def latex(self) -> str:
        spec = "".join("r" if c.numeric else "l" for c in self.columns)
        lines = [r"\begin{tabular}{" + spec + "}", r"\toprule", " & ".join(_tex(c.name) for c in self.columns) + r" \\"]
        lines.append(r"\midrule")
        for row in self.rows:
            cells = [_tex(self.cell(c, v)).replace("±", r"$\pm$") for c, v in zip(self.columns, row)]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for ext, text in (("md", self.markdown()), ("csv", self.csv()), ("tex", self.latex())):
            path = folder / f"{self.name}.{ext}"
            path.write_text(text)
            out.append(path)
        return out


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("–", "--")):
        text = text.replace(a, b)
    return text
