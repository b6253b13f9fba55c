"""Repository layout rules that pytest only reports as a collection error."""

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_test_file_has_its_own_basename():
    # tests/ and stability_tests/ are not packages: two files with one name would shadow each other
    # ("import file mismatch"), which fails the whole run at collection.
    names = Counter(path.name for folder in ("tests", "stability_tests") for path in (ROOT / folder).glob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
