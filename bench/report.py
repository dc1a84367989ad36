"""Tables for the console and for the markdown file written beside the JSON."""
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence


def fmt(value, digits: int = 3) -> str:
    """A number with `digits` significant digits (thousands separated), '-' for missing, 'n/a' for NaN."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:,.{decimals}f}"


def fmt_rate(flop_per_s: Optional[float]) -> str:
    """FLOP/s with a unit that keeps CPU (GFLOP/s) and GPU (TFLOP/s) numbers readable."""
    if flop_per_s is None:
        return "-"
    if flop_per_s >= 1e12:
        return f"{fmt(flop_per_s / 1e12)} TFLOP/s"
    return f"{fmt(flop_per_s / 1e9)} GFLOP/s"


def fmt_pct(ratio: Optional[float]) -> str:
    return "-" if ratio is None else f"{fmt(100 * ratio)}%"


def fmt_err(err: Optional[float]) -> str:
    return "-" if err is None else f"{err:.1e}"


@dataclass
class Table:
    title: str
    headers: Sequence[str]
    rows: List[Sequence[str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def add(self, *cells):
        self.rows.append([fmt(c) if not isinstance(c, str) else c for c in cells])

    def text(self) -> str:
        widths = [max(len(str(h)), *(len(str(r[i])) for r in self.rows)) if self.rows else len(str(h))
                  for i, h in enumerate(self.headers)]

        def line(cells):
            # Numbers right-aligned, text left: columns of figures line up on their last digit.
            return "  ".join(str(c).rjust(w) if _numeric(c) else str(c).ljust(w)
                             for c, w in zip(cells, widths)).rstrip()

        out = [f"== {self.title}", line(self.headers), line("-" * w for w in widths)]
        out += [line(r) for r in self.rows]
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        if self.rows:
            out.append("| " + " | ".join(self.headers) + " |")
            out.append("|" + "|".join("---:" if any(_numeric(r[i]) for r in self.rows) else "---"
                                      for i in range(len(self.headers))) + "|")
            out += ["| " + " | ".join(str(c) for c in r) + " |" for r in self.rows]
        out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out).rstrip() + "\n"


def _numeric(cell) -> bool:
    s = str(cell).replace(",", "").replace("%", "").split(" ")[0]
    try:
        float(s)
        return True
    except ValueError:
        return False
