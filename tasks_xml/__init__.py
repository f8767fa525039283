"""CASA-schema XML definitions of the alakazam tasks (the one place a task parameter is defined)."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def xml_path(task: str) -> str:
    return os.path.join(HERE, f"{task}.xml")
