"""Print a pyproject's requirements (core plus the named extras), one per line.

Image builds install dependencies from `pyproject.toml` alone, before the code is copied, so a code
change reuses the cached dependency layer. Usage: `python deps.py PYPROJECT [EXTRA ...]`.
A self-reference such as `llm-wrap[backend]` inside an extra is expanded in place.
"""

import re
import sys
import tomllib
from pathlib import Path

_SELF_REF = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*\[([^\]]*)\]\s*$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """Core requirements plus those of `extras`, in order, without duplicates."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    own_name = _canonical(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        known = ", ".join(sorted(optional)) or "none"
        raise SystemExit(f"deps.py: unknown extra(s) {', '.join(unknown)} (known: {known})")

    out: list[str] = []
    seen_extras: set[str] = set()

    def add(reqs: list[str]) -> None:
        for req in reqs:
            ref = _SELF_REF.match(req)
            if ref and _canonical(ref.group(1)) == own_name:
                for extra in (e.strip() for e in ref.group(2).split(",")):
                    if extra and extra not in seen_extras:
                        seen_extras.add(extra)
                        add(optional.get(extra, []))
            elif req not in out:
                out.append(req)

    add(project.get("dependencies", []))
    for extra in extras:
        if extra not in seen_extras:
            seen_extras.add(extra)
            add(optional[extra])
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        sys.stderr.write(__doc__ or "")
        return 0 if argv else 2
    sys.stdout.write("".join(f"{r}\n" for r in requirements(Path(argv[0]), argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
