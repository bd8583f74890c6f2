#!/usr/bin/env python3
"""Prints 'N passed, N failed, N skipped' from meson's JUnit log (one line, last).

With protocol 'gtest' meson records every GoogleTest case; other tests count as one case.
Exit status 1 when any test failed or the log is missing, so CI cannot pass on nothing."""
import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"junit_summary: cannot read {path}: {e}")
        print("0 passed, 1 failed")
        return 1
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    if passed + failed == 0:
        failed = 1
        print("junit_summary: no test ran")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/meson-logs/testlog.junit.xml"))
