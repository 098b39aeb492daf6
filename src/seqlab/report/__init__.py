"""HTML reports: one self-contained page per run (``seqlab report``) and per ``seqlab lab``.

:mod:`seqlab.report.blocks` (what a section holds) and :mod:`seqlab.report.svg` (figures as
inline SVG) know nothing of runs: families build their own sections from them. The page itself
is :mod:`seqlab.report.run_report` (sections every run has, then the family's), rendered from
the jinja2 templates in ``templates/``; :mod:`seqlab.report.live` refreshes it during training
and writes TensorBoard event files. This module imports nothing, so that a family can import
the blocks without importing the page (which imports the families).
"""
