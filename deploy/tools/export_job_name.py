"""The export Job is named by a hash of its rendered pod template, per overlay.

Why: a Job's pod template is immutable, so `kubectl apply -k` after an image bump or a changed
export setting failed on the old Job. With the content in the name, changed content is a new Job
(the old one leaves by its ttlSecondsAfterFinished) and unchanged content is the same Job
(`apply` is a no-op). The name sits in a one-line patch per overlay, `export-job-name.yaml`:

    python deploy/tools/export_job_name.py --write deploy/k8s/overlays/*   # after any change
    python deploy/tools/export_job_name.py deploy/k8s/overlays/*           # check (CI)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

BASE_NAME = "mlsharp-export"
PATCH_FILE = "export-job-name.yaml"


def rendered_job(overlay: Path) -> dict[str, Any]:
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True)
    jobs = [
        doc
        for doc in yaml.safe_load_all(out.stdout)
        if doc
        and doc.get("kind") == "Job"
        and doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") == BASE_NAME
    ]
    if len(jobs) != 1:
        raise SystemExit(f"{overlay}: expected one export Job, found {len(jobs)}")
    return jobs[0]


def expected_name(job: dict[str, Any]) -> str:
    """``mlsharp-export-`` + 10 hex of the sha256 of the pod template (canonical JSON)."""
    template = json.dumps(job["spec"]["template"], sort_keys=True, separators=(",", ":"))
    return f"{BASE_NAME}-{hashlib.sha256(template.encode()).hexdigest()[:10]}"


def patch_text(name: str) -> str:
    return (
        "# Written by deploy/tools/export_job_name.py --write: the export Job's name is a hash of\n"
        "# its pod template (a changed image or setting is a new Job). Do not edit by hand.\n"
        f"- op: replace\n  path: /metadata/name\n  value: {name}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overlays", nargs="+", type=Path)
    parser.add_argument("--write", action="store_true", help="update each overlay's name patch")
    args = parser.parse_args(argv)
    stale = []
    for overlay in args.overlays:
        job = rendered_job(overlay)
        want, have = expected_name(job), job["metadata"]["name"]
        if want == have:
            continue
        if args.write:
            (overlay / PATCH_FILE).write_text(patch_text(want))
            print(f"{overlay}: export Job renamed {have} -> {want}")
        else:
            stale.append(f"{overlay}: the export Job is named {have}, its content says {want}")
    if stale:
        print("\n".join(stale), file=sys.stderr)
        print(
            "run: python deploy/tools/export_job_name.py --write " + " ".join(map(str, args.overlays)),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
