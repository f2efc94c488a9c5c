"""The documentation's generated parts, and the checks that keep README.md and docs/ true to the code.

A page holds generated regions between two markers::

    <!-- BEGIN GENERATED: cli:punch (python -m tools.docgen) -->
    ...written by the generator, never by hand...
    <!-- END GENERATED: cli:punch -->

``python -m tools.docgen`` rewrites every region of README.md and docs/*.md from its source (the argparse
parsers, the STUN codec's registries, the topology model, bench/*.md, docs/diagrams/*.mmd, the tree);
``--check`` rewrites nothing and exits 1 naming each stale page. tests/unit/test_docs.py runs the check, and
checks links, anchors and the code each page names (tools.docgen.links, tools.docgen.references).
"""
