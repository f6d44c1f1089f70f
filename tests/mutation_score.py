"""The mutation score per module after ``mutmut run`` (``make mutants``), and the survivors with their diffs.

mutmut keeps one JSON ``mutants/<module>.meta`` per mutated module with an exit code per mutant; its own
``status_by_exit_code`` says what each code means. A module's score is killed / (all mutants), where killed
includes mutants stopped by a timeout or a crash (the test run did not pass) and a survivor or a mutant no unit
test reaches counts against it; mutants not run yet (a run narrowed by MUTANTS) are left out of the score and
counted apart. Mutants on lines marked ``# pragma: no mutate`` are never generated, so they are
in neither count; each such line says in a few words why it cannot change behaviour.

Run from the repository root:  python tests/mutation_score.py [--survivors mutants/survivors.txt] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import tomllib

NOT_KILLED = {"survived", "no tests", "suspicious", "skipped", "check was interrupted by user"}
UNCHECKED = "not checked"  # generated but not run yet (a run narrowed by MUTANTS, or interrupted)


def modules() -> list[str]:
    """The pure modules pyproject.toml's [tool.mutmut] mutates, in its order."""
    return tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]


def statuses(module: str) -> dict[str, str]:
    """Mutant name -> mutmut's status for one module ({} before it was run)."""
    from mutmut.stats import status_by_exit_code

    meta = Path("mutants") / f"{module}.meta"
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in codes.items()}


def survivor_diff(name: str, module: str) -> str:
    """The mutant's diff as ``mutmut show`` prints it (its internal helper; the name alone where that fails)."""
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        return get_diff_for_mutant(name, path=module)
    except Exception as exc:  # noqa: BLE001 - a report line must not stop the table
        return f"(no diff: {exc})"


def table(rows: list[tuple[str, int, int, int]], markdown: bool) -> str:
    """One line per module and one for all: mutants run, killed, score %, and mutants not run yet."""

    def line(name, total, killed, unchecked):
        score = f"{100.0 * killed / total:.1f}" if total else "-"
        if markdown:
            return f"| {name} | {total} | {killed} | {score} | {unchecked} |"
        return f"{name:<42} {total:>8} {killed:>8} {score:>8} {unchecked:>8}"

    head = ["| module | run | killed | score % | not run |", "|---|---:|---:|---:|---:|"] if markdown else []
    if not markdown:
        head.append(f"{'module':<42} {'run':>8} {'killed':>8} {'score %':>8} {'not run':>8}")
    body = [line(*row) for row in rows]
    return "\n".join(head + body + [line("all", *(sum(r[i] for r in rows) for i in (1, 2, 3)))])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", default="mutants/survivors.txt", help="file for the surviving mutants")
    parser.add_argument("--markdown", action="store_true", help="the table as Markdown (for TESTING.md)")
    args = parser.parse_args(argv)
    rows, survivors = [], []
    for module in modules():
        status = statuses(module)
        if not status:
            continue
        alive = sorted(name for name, s in status.items() if s in NOT_KILLED)
        unchecked = sum(s == UNCHECKED for s in status.values())
        run = len(status) - unchecked
        rows.append((module, run, run - len(alive), unchecked))
        survivors += [f"# {name}: {status[name]}\n{survivor_diff(name, module)}\n" for name in alive]
    if not rows:
        print("no mutation results: run `make mutants` first", file=sys.stderr)
        return 2
    print(table(rows, args.markdown))
    Path(args.survivors).parent.mkdir(parents=True, exist_ok=True)
    Path(args.survivors).write_text("\n".join(survivors))
    print(f"{len(survivors)} surviving mutants written to {args.survivors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
