"""HTML reports: one self-contained page per run (``seqlab report``) and per ``seqlab lab``.

The page is :mod:`seqlab.report.run_report` (the sections every run has, from
:mod:`seqlab.report.training_sections`, then the family's own, built by each family from
:mod:`seqlab.sections`), rendered from the jinja2 templates in ``templates/``;
:mod:`seqlab.report.live` refreshes it during training and writes TensorBoard event files;
:mod:`seqlab.report.lab_page` is ``seqlab lab``'s page. This package sits above the families
(it asks the registry for a run's family); what families build on sits below them, in
:mod:`seqlab.sections`.
"""
