#!/usr/bin/env python3
"""`helm lint` and `helm template` for tests/deploy/check-kubernetes.sh, through helm-python-sdk
(PyPI), which is Helm 4's Go SDK as a library: no helm binary is needed.

    helm_chart.py lint CHART [-f VALUES]... [--set K=V]... [--namespace NS]
    helm_chart.py template CHART --name NAME --namespace NS --out FILE [-f VALUES]... [--set K=V]...
    helm_chart.py template ... --expect-error REGEX

`lint` is strict (warnings fail, as `helm lint --strict`) and prints every finding. `template`
checks the values against values.schema.json, renders like `helm template` (offline; the
manifests in the order of their template file names, each under a `# Source:` comment) and
writes the manifests to FILE, NOTES.txt to FILE.NOTES.txt and the values the release would use
(the chart's defaults, the -f files, --set) to FILE.values.json. With --expect-error it succeeds only when
the schema or the rendering fails with a message matching REGEX (a check that a guard works).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import sys
import tempfile
from typing import Any, Iterator

try:
    import helm_python as helm
except ImportError:
    sys.exit("the Python module helm_python is missing: pip install helm-python-sdk")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of -f files and --set: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def user_values(files: list[str], sets: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            values = merge(values, helm.values_from_yaml(f.read()))
    for expression in sets:
        values = merge(values, helm.parse_set_string(expression))
    return values


@contextlib.contextmanager
def helm_log(show_links: bool) -> Iterator[None]:
    """Helm's Go logger writes to file descriptor 2, one INFO line per symbolic link it follows
    each time it loads the chart (files/ holds two). Print those once if show_links (lint
    does), the rest as they are."""
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            links = set()
            for line in captured.read().decode(errors="replace").splitlines():
                found = re.search(r"found symbolic link in path.* path=(\S+) resolved=(\S+)", line)
                if found:
                    links.add(found.groups())
                elif line.strip():
                    print(line, file=sys.stderr)
            for path, resolved in sorted(links) if show_links else []:
                print(f"helm followed the symbolic link {os.path.relpath(path)} -> {os.path.relpath(resolved)}")


def lint(args: argparse.Namespace) -> int:
    values = user_values(args.values, args.set)
    with helm_log(show_links=True):
        report = helm.lint(
            args.chart,
            values or None,
            strict=True,
            namespace=args.namespace,
            kube_version=args.kube_version,
        )
    names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    failed = False
    for message in report.get("messages") or []:
        severity = message.get("severity", 0)
        print(f"[{names.get(severity, severity)}] {message.get('path')}: {message.get('error')}")
        # Strict: a warning fails like an error; INFO (e.g. "icon is recommended") does not.
        failed |= severity >= 2 or severity == 0
    for error in report.get("errors") or []:
        print(f"[ERROR] {error}")
        failed = True
    if report.get("total_charts_linted") != 1:
        print(f"[ERROR] linted {report.get('total_charts_linted')} charts, expected 1")
        failed = True
    print(f"lint {args.chart}: {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


def template(args: argparse.Namespace) -> int:
    values = user_values(args.values, args.set)
    try:
        with helm_log(show_links=False), helm.Chart.load(args.chart) as chart:
            # helm install/template check the merged values against values.schema.json.
            chart.validate_schema(chart.merge_values(values))
            rendered = chart.render(
                values, name=args.name, namespace=args.namespace, is_install=True
            )
            merged = chart.merge_values(values)
    except helm.HelmError as e:
        if args.expect_error:
            if re.search(args.expect_error, str(e)):
                print(f"rejected as expected: {e}")
                return 0
            print(f"rejected, but not with /{args.expect_error}/: {e}", file=sys.stderr)
            return 1
        print(f"render failed: {e}", file=sys.stderr)
        return 1
    if args.expect_error:
        print(f"rendered, but expected an error matching /{args.expect_error}/", file=sys.stderr)
        return 1

    documents = []
    notes = ""
    for path in sorted(rendered):
        text = rendered[path]
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        if not path.endswith((".yaml", ".yml")) or not text.strip():
            continue
        for part in re.split(r"(?m)^---\s*$", text):
            if part.strip() and any(
                line.strip() and not line.lstrip().startswith("#") for line in part.splitlines()
            ):
                documents.append(f"---\n# Source: {path}\n{part.strip(chr(10))}\n")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("".join(documents))
    with open(args.out + ".NOTES.txt", "w", encoding="utf-8") as f:
        f.write(notes)
    # The values the release would use (defaults, -f files, --set), for the checks of the output.
    with open(args.out + ".values.json", "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=2)
    print(f"rendered {len(documents)} documents to {args.out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("lint", "template"):
        p = sub.add_parser(name)
        p.add_argument("chart")
        p.add_argument("-f", "--values", action="append", default=[])
        p.add_argument("--set", action="append", default=[])
        p.add_argument("--namespace", default="default")
        if name == "lint":
            p.add_argument("--kube-version", default=None, help="e.g. v1.32.0")
        else:
            p.add_argument("--name", required=True)
            p.add_argument("--out", required=True)
            p.add_argument("--expect-error", default=None, metavar="REGEX")
    args = parser.parse_args()
    return lint(args) if args.command == "lint" else template(args)


if __name__ == "__main__":
    sys.exit(main())
