"""Tables: one small structure rendered as Markdown (terminal and report), CSV and LaTeX."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    name: str  # file stem
    title: str
    columns: list[str]
    rows: list[list]
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def _cell(value) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(self._cell(v) for v in row) + " |" for row in self.rows]
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.columns)
        writer.writerows([[self._cell(v) for v in row] for row in self.rows])
        return buf.getvalue()

    def latex(self) -> str:
        def esc(text: str) -> str:
            for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
                text = text.replace(a, b)
            return text

        spec = "l" * len(self.columns)
        lines = [
            r"\begin{tabular}{" + spec + "}",
            r"\hline",
            " & ".join(esc(c) for c in self.columns) + r" \\",
            r"\hline",
        ]
        lines += [" & ".join(esc(self._cell(v)) for v in row) + r" \\" for row in self.rows]
        lines += [r"\hline", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for ext, text in (("md", self.markdown()), ("csv", self.csv()), ("tex", self.latex())):
            path = folder / f"{self.name}.{ext}"
            path.write_text(text)
            out.append(path)
        return out
