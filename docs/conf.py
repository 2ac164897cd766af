"""Sphinx configuration of the airflow-edc-callbacks documentation (``sphinx-build -W -b html docs docs/_build/html``).

Pages are Markdown (MyST). Three kinds of page are written at build time by ``_ext/edc_docs.py`` from the code
itself, never copied by hand: the configuration reference (``airflow_edc_callbacks.config.OPTIONS``, as the
provider info declares it), the CLI reference (the ``argparse`` parser) and one API
page per public name of the ``__all__`` of ``operators``, ``sensors``, ``hooks`` and ``triggers``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))

from airflow_edc_callbacks import __version__  # noqa: E402

project = "airflow-edc-callbacks"
author = "airflow-edc-callbacks developers"
copyright = "airflow-edc-callbacks developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "edc_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_inherit_docstrings = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True

html_theme = "furo"
html_title = f"airflow-edc-callbacks {release}"
html_static_path: list[str] = []
# the JSON schema of the OpenLineage run facet, at the site's root (the facet's _schemaURL points there)
html_extra_path = ["../airflow_edc_callbacks/lineage/lineage-facets.json"]
