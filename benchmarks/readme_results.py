"""Rewrite the README's results block from a study's store.

    python benchmarks/readme_results.py normlab-out

runs ``normlab report normlab-out --readme`` and replaces the README section between the
``<!-- normlab report --readme: begin/end -->`` markers with its output; nothing else changes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from normlab.report.write import replace_readme_block

README = Path(__file__).resolve().parents[1] / "README.md"


def main(out_dir: str) -> None:
    command = [sys.executable, "-m", "normlab.cli", "report", out_dir, "--readme"]
    block = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()
    README.write_text(replace_readme_block(README.read_text(), block))
    print(f"rewrote the results block of {README} from {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "normlab-out")
