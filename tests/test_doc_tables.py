"""README.md's YAML key tables are generated from the task XML (caltasks/doc_tables.py) and up to date."""

import os

from alakazam import schema
from alakazam.caltasks import doc_tables

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_tables_are_generated_from_the_xml():
    with open(README) as fh:
        text = fh.read()
    for section in schema.SECTIONS:                  # every block has its marked table
        assert doc_tables.BEGIN.format(s=section) in text and doc_tables.END.format(s=section) in text
    assert doc_tables.render(text) == text, \
        "README.md parameter tables are out of date: run  python -m alakazam.caltasks.doc_tables README.md"


def test_every_yaml_key_has_a_row(tmp_path):
    for section in schema.SECTIONS:
        rows = doc_tables.table(section).splitlines()[2:]
        assert [r.split("`")[1] for r in rows] == list(schema.specs(section)), section
    # the check mode names the command, and a stale table is rewritten
    p = tmp_path / "R.md"
    p.write_text(f"x\n{doc_tables.BEGIN.format(s='apply')}\n| old |\n{doc_tables.END.format(s='apply')}\ny\n")
    assert doc_tables.main([str(p), "--check"]) == 1
    assert doc_tables.main([str(p)]) == 0 and doc_tables.main([str(p), "--check"]) == 0
    assert "`memory_limit_gb`" in p.read_text() and p.read_text().endswith("y\n")
