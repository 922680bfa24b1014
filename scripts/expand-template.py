"""Prints a SAM template expanded by aws-sam-translator (scripts/sam_expand.py) as JSON on
stdout: what CloudFormation would see after the transform, intrinsics still unresolved.
devtools' IAM checks (devtools/src/iam/) read it. Usage: expand-template.py [TEMPLATE]
(default infra/template.yaml)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sam_expand import expand  # noqa: E402


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "infra" / "template.yaml"
    json.dump(expand(path), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
